; A multiboot test kernel that triple-faults: it loads an empty IDT and raises #BP.
bits 32
org 0x100000
MB_MAGIC equ 0x1BADB002
MB_FLAGS equ (1 << 1) | (1 << 16)
header:
  dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
  dd header, header, image_end, image_end, start
start:
  lidt [empty_idt]
  int3
  hlt
empty_idt:
  dw 0
  dd 0
image_end:

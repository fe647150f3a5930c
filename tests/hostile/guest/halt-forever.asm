; A multiboot test kernel that prints a line on COM1 and then halts with interrupts off, as
; Linux's decompressor does on a fatal error: typevisor must end with "the guest halted for good".
bits 32
org 0x100000
MB_MAGIC equ 0x1BADB002
MB_FLAGS equ (1 << 1) | (1 << 16)
header:
  dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
  dd header, header, image_end, image_end, start
start:
  mov esi, msg
.next:
  lodsb
  test al, al
  jz .stop
  mov dx, 0x3f8
  out dx, al
  jmp .next
.stop:
  cli
  hlt
  jmp .stop
msg: db "about to halt", 10, 0
image_end:

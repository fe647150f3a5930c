; A multiboot test kernel that prints a line on COM1 and then halts forever with interrupts
; off: the VM only ends when the host ends it (Ctrl-A X on the console, or a signal).
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
  jz .idle
  mov dx, 0x3f8
  out dx, al
  jmp .next
.idle:
  cli
  hlt
  jmp .idle
msg: db "idle kernel up", 10, 0
image_end:

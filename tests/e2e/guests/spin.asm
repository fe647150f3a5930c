; A multiboot test kernel that prints a line on COM1 and then spins forever with interrupts
; off, never halting: the VM only ends when the host ends it (a signal, or Ctrl-A X). Unlike
; idle.asm it cannot be taken for a guest that has halted for good.
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
  jz .spin
  mov dx, 0x3f8
  out dx, al
  jmp .next
.spin:
  cli
.loop:
  pause
  jmp .loop
msg: db "spin kernel up", 10, 0
image_end:

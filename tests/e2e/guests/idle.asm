; A multiboot test kernel that prints a line on COM1 and then idles forever: interrupts on but
; every PIC line masked, so the VM only ends when the host ends it (Ctrl-A X on the console, or
; a signal). (A HLT with interrupts off would end the VM: "the guest halted for good".)
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
  mov al, 0xff
  out 0x21, al
  out 0xa1, al
.sleep:
  sti
  hlt
  jmp .sleep
msg: db "idle kernel up", 10, 0
image_end:

; A multiboot (v1) test kernel in the a.out-kludge format: prints its command line and the
; module's first bytes on COM1, then ends the VM through the debug-exit port with value 0x21.
; It loads at 1 MiB, or where -DLOAD=... says (below 1 MiB too: the loader moves its boot
; information out of the way).
bits 32
%ifndef LOAD
%define LOAD 0x100000
%endif
org LOAD

MB_MAGIC equ 0x1BADB002
MB_FLAGS equ (1 << 0) | (1 << 1) | (1 << 16) ; page-align modules, memory info, address fields

header:
  dd MB_MAGIC
  dd MB_FLAGS
  dd -(MB_MAGIC + MB_FLAGS)
  dd header          ; header_addr
  dd header          ; load_addr
  dd image_end       ; load_end_addr
  dd bss_end         ; bss_end_addr
  dd start           ; entry_addr

start:
  mov esp, stack_top
  cmp eax, 0x2BADB002
  jne fail
  mov esi, msg
  call puts
  mov esi, [ebx + 16]   ; cmdline
  call puts
  mov al, 10
  call putc
  cmp dword [ebx + 20], 1 ; mods_count
  jne fail
  mov edi, [ebx + 24]   ; mods_addr
  mov esi, [edi]        ; mod_start
  mov ecx, 8
.mod:
  lodsb
  call putc
  loop .mod
  mov al, 10
  call putc
  mov eax, [ebx + 8]    ; mem_upper (KiB above 1 MiB)
  cmp eax, 1024
  jb fail
  mov dx, 0xf4
  mov eax, 0x21
  out dx, eax
fail:
  mov dx, 0xf4
  mov eax, 0x3
  out dx, eax
  hlt

puts:                   ; ESI = NUL-terminated string
  lodsb
  test al, al
  jz .done
  call putc
  jmp puts
.done:
  ret

putc:                   ; AL = byte, waits for THRE
  push edx
  push eax
  mov dx, 0x3fd
.wait:
  in al, dx
  test al, 0x20
  jz .wait
  pop eax
  mov dx, 0x3f8
  out dx, al
  pop edx
  ret

msg: db "multiboot ok, cmdline: ", 0
image_end:
  alignb 16
  times 4096 db 0
stack_top:
bss_end:

; A multiboot (v1, a.out kludge) test kernel for running several VMs in one process: enters long
; mode and, by its command line,
;   "hash N SEED" - runs N rounds of a 32-bit xorshift hash from SEED (a hot loop with a call and
;                   stores to RAM, so the bt engine translates it), patching the immediate of a
;                   function it calls with SEED first (self-modifying code), prints "hash up",
;                   and ends the VM through the debug-exit port with the hash as the value;
;   "idle"        - prints "idle up" and halts with interrupts on and every PIC line masked, so
;                   the VM runs until the host stops it.
; The hash, in JavaScript (32-bit arithmetic), for each of the N rounds:
;   x ^= x << 13; x ^= x >>> 17; x ^= x << 5; acc = acc * 31 + x + SEED
; starting from x = SEED | 1, acc = 0; the exit value is acc.
bits 32
%include "multiboot-args.inc"
org 0x100000

MB_MAGIC equ 0x1BADB002
MB_FLAGS equ (1 << 0) | (1 << 1) | (1 << 16)

header:
  dd MB_MAGIC
  dd MB_FLAGS
  dd -(MB_MAGIC + MB_FLAGS)
  dd header
  dd header
  dd image_end
  dd bss_end
  dd start

start:
  mov esp, stack_top
  mov esi, [ebx + 16]           ; command line
  SKIP_KERNEL_NAME              ; tests/support/asm/multiboot-args.inc
  mov [cmdline], esi
  ; identity-map the first 1 GiB with 2 MiB pages
  mov edi, pd
  xor eax, eax
  mov ecx, 512
.pde:
  mov edx, eax
  or edx, 0x83                  ; present, writable, 2 MiB
  mov [edi], edx
  mov dword [edi + 4], 0
  add eax, 0x200000
  add edi, 8
  loop .pde
  mov dword [pdpt], pd + 3
  mov dword [pml4], pdpt + 3
  mov eax, cr4
  or eax, 1 << 5                ; PAE
  mov cr4, eax
  mov eax, pml4
  mov cr3, eax
  mov ecx, 0xC0000080           ; EFER.LME
  rdmsr
  or eax, 1 << 8
  wrmsr
  mov eax, cr0
  or eax, 0x80000001            ; PG | PE
  mov cr0, eax
  lgdt [gdtr]
  jmp 0x08:long_mode

bits 64
long_mode:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov rsp, stack_top
  mov esi, [cmdline]
  mov eax, [rsi]
  cmp eax, 'hash'
  je hash
  cmp eax, 'idle'
  je idle
  mov dx, 0xf4                  ; an unknown command: value 0xbad
  mov eax, 0xbad
  out dx, eax
  hlt

idle:
  mov rsi, idle_msg
  call puts
  mov al, 0xff
  out 0x21, al
  out 0xa1, al
.sleep:
  sti
  hlt
  jmp .sleep

hash:
  add rsi, 5
  call number
  mov r8d, eax                  ; N
  call number
  mov r9d, eax                  ; SEED
  mov [add_seed + 1], r9d       ; patch `mov eax, imm32` (code the engine may have seen)
  push rsi
  mov rsi, hash_msg
  call puts
  pop rsi
  mov ebx, r9d
  or ebx, 1                     ; x
  xor edi, edi                  ; acc
  mov ecx, r8d
  test ecx, ecx
  jz .done
.round:
  mov eax, ebx
  shl eax, 13
  xor ebx, eax
  mov eax, ebx
  shr eax, 17
  xor ebx, eax
  mov eax, ebx
  shl eax, 5
  xor ebx, eax
  imul edi, edi, 31
  add edi, ebx
  call add_seed
  add edi, eax
  mov [last], edi               ; a store to RAM each round
  dec ecx
  jnz .round
.done:
  mov eax, [last]
  cmp r8d, 0
  cmove eax, edi
  mov dx, 0xf4
  out dx, eax
  hlt

add_seed:
  mov eax, 0                    ; imm32 patched to SEED
  ret

number:                         ; parse decimal at RSI (skipping spaces) into EAX
  xor eax, eax
.skip:
  cmp byte [rsi], ' '
  jne .digit
  inc rsi
  jmp .skip
.digit:
  movzx edx, byte [rsi]
  sub edx, '0'
  cmp edx, 9
  ja .end
  imul eax, eax, 10
  add eax, edx
  inc rsi
  jmp .digit
.end:
  ret

puts:                           ; RSI = NUL-terminated string, to COM1
  lodsb
  test al, al
  jz .done
  mov dx, 0x3f8
  out dx, al
  jmp puts
.done:
  ret

align 8
gdt:
  dq 0
  dq 0x00AF9A000000FFFF         ; 64-bit code
  dq 0x00CF92000000FFFF         ; data
gdtr:
  dw gdtr - gdt - 1
  dd gdt
cmdline: dd 0
last: dd 0
hash_msg: db "hash up", 10, 0
idle_msg: db "idle up", 10, 0
image_end:
  alignb 4096
pml4: resb 4096
pdpt: resb 4096
pd: resb 4096
  resb 8192
stack_top:
bss_end:

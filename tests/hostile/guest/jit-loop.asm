; A hostile-guest test kernel (multiboot v1, a.out kludge): enters long mode and does what a JIT
; does, a million times over, then reports through the debug-exit port (status 0x11 on success,
; 0x13 on a wrong result). The command line picks the pattern:
;   "jit"  - patch `mov eax, imm32; ret` into a code buffer and call it (every call runs new code)
;   "data" - store to a counter in the same 64-byte line as a hot function, and call the function
;   "fresh" - write 20,000 functions, each to a new place, and call each 300 times (so that each
;             is worth translating): a JIT that keeps making hot code
bits 32
%include "multiboot-args.inc"
org 0x100000

MB_MAGIC equ 0x1BADB002
MB_FLAGS equ (1 << 0) | (1 << 1) | (1 << 16)
ITERATIONS equ 1000000

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
  mov eax, [esi]
  mov [mode], eax
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
  mov eax, [mode]
  cmp eax, 'data'
  je data_loop
  cmp eax, 'fres'
  je fresh_loop

; patch the immediate of `mov eax, imm32; ret` in place, call it, check what it returned
jit_loop:
  mov ecx, ITERATIONS
  mov byte [codebuf], 0xB8      ; mov eax, imm32
  mov byte [codebuf + 5], 0xC3  ; ret
.next:
  mov [codebuf + 1], ecx
  call codebuf
  cmp eax, ecx
  jne bad
  dec ecx
  jnz .next
  jmp good

; a counter beside hot code: the code never changes, so nothing needs translating again
data_loop:
  mov ecx, ITERATIONS
.next:
  inc dword [beside]
  call hot_fn
  cmp eax, 42
  jne bad
  dec ecx
  jnz .next
  cmp dword [beside], ITERATIONS
  jne bad
  jmp good

; each function in a new place, called often enough to be translated
fresh_loop:
  mov ecx, 20000
  mov rdi, 0x1000000            ; 16 MiB: the code area
.next:
  mov byte [rdi], 0xB8
  mov [rdi + 1], ecx
  mov byte [rdi + 5], 0xC3
  mov esi, 300
.call:
  call rdi
  cmp eax, ecx
  jne bad
  dec esi
  jnz .call
  add rdi, 64
  dec ecx
  jnz .next
  jmp good

good:
  mov dx, 0xf4
  mov eax, 0x11
  out dx, eax
bad:
  mov dx, 0xf4
  mov eax, 0x13
  out dx, eax
  hlt

align 64
hot_fn:
  mov eax, 42
  ret
beside: dd 0                    ; same 64-byte line as hot_fn

align 8
gdt:
  dq 0
  dq 0x00AF9A000000FFFF         ; 64-bit code
  dq 0x00CF92000000FFFF         ; data
gdtr:
  dw gdtr - gdt - 1
  dd gdt
mode: dd 0

align 64
codebuf:
  times 64 db 0xC3
image_end:
  alignb 4096
pml4: resb 4096
pdpt: resb 4096
pd: resb 4096
  resb 8192
stack_top:
bss_end:

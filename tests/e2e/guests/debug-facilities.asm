; A multiboot test kernel for the debug facilities (issue 13), one line each on COM1, then exit
; 0x21 through the debug-exit port:
; - "step": single-step traps (RFLAGS.TF) counted from the instruction after the POPF that sets
;   TF to the POPF that clears it: none after INT n (its delivery clears TF), and after MOV SS the
;   trap waits for the next instruction; then DR6.BS (1);
; - "ibp": an instruction breakpoint (DR0, DR7.L0 execute) faults once before the instruction; the
;   handler sets RF in the frame so it runs on return; the count, DR6.B0..B3, whether the frame's
;   EIP was the instruction's and whether the instruction ran;
; - "dbp": a 4-byte write watch (DR1) ignores a read and traps after a 2-byte store inside it: the
;   count, DR6.B0..B3, whether the frame's EIP was the next instruction's;
; - "io": with CR4.DE, an I/O breakpoint (DR3, port 0x80) traps after the OUT to it only: the
;   count, DR6.B0..B3, whether the frame's EIP was the next instruction's;
; - "gd": with DR7.GD, MOV from DR0 faults (#DB) with DR6.BD, and GD is clear afterwards: the
;   count, DR6.BD, whether the frame's EIP was the MOV's, DR7.GD after;
; - "rf": RFLAGS.RF in the frame of a fault (#UD, #DE) is 1, in that of INT3 (a trap) 0.
%include "lib/kernel32.inc"

TF equ 1 << 8
RF equ 1 << 16

main:
  mov eax, db_handler
  mov edi, 1
  call set_gate
  mov eax, soft_handler
  mov edi, 0x40
  call set_gate
  mov eax, ud_handler
  mov edi, 6
  call set_gate
  mov eax, de_handler
  mov edi, 0
  call set_gate
  mov eax, bp_handler
  mov edi, 3
  call set_gate

  ; --- step
  mov dword [db_count], 0
  pushfd
  or dword [esp], TF
  popfd                                 ; sets TF: no trap after it
  mov eax, 1                            ; 1
  int 0x40                              ; no trap (and the handler is not traced)
  mov ax, ss                            ; 2 (after the IRET that restored TF)
  mov ss, ax                            ; the trap waits...
  nop                                   ; 3 ...until after this
  pushfd                                ; 4
  and dword [esp], ~TF                  ; 5
  popfd                                 ; 6: TF was set when it began
  mov ebx, 2
  PRINT "step: "
  mov eax, [db_count]
  call putdec
  mov al, ' '
  call putc
  mov eax, [db_dr6]
  shr eax, 14
  and eax, 1
  call putdec
  PRINT " int: "
  mov eax, [soft_count]
  call putdec
  call newline

  ; --- ibp
  xor eax, eax
  mov dr6, eax
  mov dword [db_count], 0
  mov dword [set_rf], 1
  mov eax, target
  mov dr0, eax
  mov eax, 1                            ; L0, execute, length 1
  mov dr7, eax
  xor ebx, ebx
target:
  add ebx, 7
  xor eax, eax
  mov dr7, eax
  mov [ran], ebx
  PRINT "ibp: "
  mov eax, [db_count]
  call putdec
  mov al, ' '
  call putc
  mov eax, [db_dr6]
  and eax, 0xf
  call putdec
  mov al, ' '
  call putc
  xor eax, eax
  cmp dword [db_eip], target
  sete al
  call putdec
  mov al, ' '
  call putc
  mov eax, [ran]
  call putdec
  call newline

  ; --- dbp
  xor eax, eax
  mov dr6, eax
  mov dword [db_count], 0
  mov dword [set_rf], 0
  mov eax, var
  mov dr1, eax
  mov eax, (1 << 2) | (1 << 20) | (3 << 22)   ; L1, write, 4 bytes
  mov dr7, eax
  mov eax, [var]                        ; a read: no trap
  mov word [var + 2], 5                 ; inside the 4 bytes: trap after it
after_store:
  mov dword [var + 4], 6                ; outside: no trap
  xor eax, eax
  mov dr7, eax
  PRINT "dbp: "
  mov eax, [db_count]
  call putdec
  mov al, ' '
  call putc
  mov eax, [db_dr6]
  and eax, 0xf
  call putdec
  mov al, ' '
  call putc
  xor eax, eax
  cmp dword [db_eip], after_store
  sete al
  call putdec
  call newline

  ; --- io
  xor eax, eax
  mov dr6, eax
  mov dword [db_count], 0
  mov eax, cr4
  or eax, 1 << 3                        ; CR4.DE: R/W 10 means I/O
  mov cr4, eax
  mov eax, 0x80
  mov dr3, eax
  mov eax, (1 << 6) | (2 << 28)         ; L3, I/O, 1 byte
  mov dr7, eax
  mov dx, 0x3f9
  in al, dx                             ; another port: no trap
  out 0x80, al                          ; trap after it
after_out:
  xor eax, eax
  mov dr7, eax
  PRINT "io: "
  mov eax, [db_count]
  call putdec
  mov al, ' '
  call putc
  mov eax, [db_dr6]
  and eax, 0xf
  call putdec
  mov al, ' '
  call putc
  xor eax, eax
  cmp dword [db_eip], after_out
  sete al
  call putdec
  call newline

  ; --- gd
  xor eax, eax
  mov dr6, eax
  mov dword [db_count], 0
  mov eax, 1 << 13                      ; DR7.GD alone
  mov dr7, eax
gd_insn:
  mov eax, dr0                          ; #DB (a fault) with DR6.BD; GD is clear in the handler
  mov eax, dr7                          ; so this one does not fault
  mov [gd_dr7], eax
  PRINT "gd: "
  mov eax, [db_count]
  call putdec
  mov al, ' '
  call putc
  mov eax, [db_dr6]
  shr eax, 13
  and eax, 1
  call putdec
  mov al, ' '
  call putc
  xor eax, eax
  cmp dword [db_eip], gd_insn
  sete al
  call putdec
  mov al, ' '
  call putc
  mov eax, [gd_dr7]
  shr eax, 13
  and eax, 1
  call putdec
  call newline

  ; --- rf
  ud2
  xor edx, edx
  mov eax, 1
  xor ecx, ecx
  div ecx
  int3
  PRINT "rf: ud "
  mov eax, [rf_ud]
  call putdec
  PRINT " de "
  mov eax, [rf_de]
  call putdec
  PRINT " bp "
  mov eax, [rf_bp]
  call putdec
  call newline

  EXIT 0x21

db_handler:
  push eax
  inc dword [db_count]
  mov eax, dr6
  mov [db_dr6], eax
  mov eax, [esp + 4]
  mov [db_eip], eax
  cmp dword [set_rf], 0
  je .out
  or dword [esp + 12], RF
  cmp dword [db_count], 5               ; a breakpoint that keeps firing: stop it
  jb .out
  xor eax, eax
  mov dr7, eax
.out:
  pop eax
  iret

soft_handler:
  inc dword [soft_count]
  iret

ud_handler:                             ; skip the 2-byte UD2
  push eax
  mov eax, [esp + 12]
  shr eax, 16
  and eax, 1
  mov [rf_ud], eax
  add dword [esp + 4], 2
  pop eax
  iret

de_handler:                             ; skip the 2-byte DIV ECX
  push eax
  mov eax, [esp + 12]
  shr eax, 16
  and eax, 1
  mov [rf_de], eax
  add dword [esp + 4], 2
  pop eax
  iret

bp_handler:
  push eax
  mov eax, [esp + 12]
  shr eax, 16
  and eax, 1
  mov [rf_bp], eax
  pop eax
  iret

align 4
db_count: dd 0
db_dr6: dd 0
db_eip: dd 0
set_rf: dd 0
soft_count: dd 0
ran: dd 0
rf_ud: dd 9
rf_de: dd 9
rf_bp: dd 9
gd_dr7: dd 0
align 8
var: dq 0

KERNEL_END

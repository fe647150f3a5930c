; A multiboot test kernel for SMEP and SMAP (issue 13), with 32-bit paging: prints one line per
; checked behaviour on COM1 — "name: ok", "name: #UD" or "name: #PF err=<error code> cr2=U+<CR2
; minus the user page's address>" — then exits through the debug-exit port with 0x21 (0x22 when
; CPUID lacks SMEP or SMAP).
;
; Memory: 0-4 MiB identity-mapped by 4 KiB pages, supervisor read/write, except `upage` (a user
; page: U/S in the PDE and the PTE; it holds data, an LDT, code run at CPL 0 and at CPL 3, and the
; CPL-3 stack) and `uro` (a read-only user page). Each probe sets a recovery point; the #PF, #UD
; and "done" (int 0x52) handlers record what happened and resume there at CPL 0 with EFLAGS = 2.
;
; The lines and why:
; - smap-off read/exec/ldt: with CR4.SMEP = SMAP = 0 the kernel reads, runs and loads an LDT
;   descriptor from the user page (and the TLB holds that page for the kernel);
; - stac/clac: STAC and CLAC set and clear EFLAGS.AC, with CR4.SMAP clear too;
; - cr4: SMEP and SMAP set; the accesses below use the same page: the CR4 write dropped what the
;   TLB held;
; - read/write/exec: #PF with P, W as the access, I/D for the fetch (32-bit paging reports I/D
;   under SMEP), U/S clear;
; - stac read/write, popf, iret, int: AC opens the user page to explicit accesses, whichever way it
;   was set; CLAC and an IRET to AC = 0 close it again (after the page was used while open);
;   interrupt delivery in protected mode keeps AC;
; - ro: with AC set, CR0.WP still protects a read-only user page; with WP clear the write goes
;   through, without AC it faults;
; - ldt ac=0/ac=1: loading DS from an LDT on a user page reads the LDT with an implicit supervisor
;   access, which SMAP denies whatever AC says (SDM vol. 3 §4.6.1). QEMU 7.2 lets implicit accesses
;   at CPL < 3 through while AC is set: there "ldt ac=1" prints "ok" (the test records both);
; - cpl3 ...: at CPL 3 the same LDT load faults (an implicit supervisor access; AC, which CPL 3 may
;   set with POPF, does not matter at CPL 3); STAC and CLAC raise #UD; "cpl3 ok" is the control
;   (code on the user page runs at CPL 3 and comes back);
; - frame: an interrupt taken at CPL 0 with ESP on the user page and AC set pushes its frame there
;   (an explicit supervisor access).
%include "lib/kernel32.inc"

SEL_CODE equ 0x08
SEL_DATA equ 0x10
SEL_UCODE equ 0x1b
SEL_UDATA equ 0x23
SEL_TSS equ 0x28
SEL_LDT equ 0x30
SEL_LDT_DATA equ 0x07                   ; LDT entry 0, RPL 3
EFLAGS_AC equ 1 << 18
CR4_SMEP equ 1 << 20
CR4_SMAP equ 1 << 21
CR0_WP equ 1 << 16
UVAL equ 0x12345678

; PROBE "name" ... END_PROBE: print "name: ", run the instructions between, print the outcome
%macro PROBE 1
  %push probe
  PRINT %1
  PRINT ": "
  mov dword [f_vec], 0
  mov [rec_esp], esp
  mov dword [rec_eip], %$done
%endmacro
%macro END_PROBE 0
  %$done:
  push 2                                ; AC clear for what follows
  popfd
  call report
  call newline
  %pop
%endmacro
; END_PROBE_VAL: also print the value the probe left in f_val
%macro END_PROBE_VAL 0
  %$done:
  push 2
  popfd
  call report
  mov al, ' '
  call putc
  mov eax, [f_val]
  call puthex
  call newline
  %pop
%endmacro
; USER entry, eflags: run `entry` (on the user page) at CPL 3 with the given EFLAGS
%macro USER 2
  push SEL_UDATA
  push ustack_top
  push %2
  push SEL_UCODE
  push %1
  iret
%endmacro

main:
  mov eax, 7
  xor ecx, ecx
  cpuid
  PRINT "cpuid: smep="
  mov eax, ebx
  shr eax, 7
  and eax, 1
  call putdec
  PRINT " smap="
  mov eax, ebx
  shr eax, 20
  and eax, 1
  call putdec
  call newline
  and ebx, (1 << 7) | (1 << 20)
  cmp ebx, (1 << 7) | (1 << 20)
  je .have
  EXIT 0x22
.have:
  ; GDT with user segments, a TSS (ESP0 for CPL 3) and an LDT on the user page
  mov edi, gdt + SEL_TSS
  mov eax, tss
  mov cx, 0x67
  mov dl, 0x89
  call make_desc
  mov edi, gdt + SEL_LDT
  mov eax, ldt
  mov cx, 7
  mov dl, 0x82
  call make_desc
  mov dword [tss + 4], kstack_top
  mov dword [tss + 8], SEL_DATA
  mov word [tss + 0x66], 0x68
  lgdt [gdtr]
  jmp SEL_CODE:.reload
.reload:
  mov ax, SEL_DATA
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov fs, ax
  mov gs, ax
  mov ax, SEL_TSS
  ltr ax
  mov ax, SEL_LDT
  lldt ax
  mov eax, pf_handler
  mov edi, 14
  call set_gate
  mov eax, ud_handler
  mov edi, 6
  call set_gate
  mov eax, int50_handler
  mov edi, 0x50
  call set_gate
  mov eax, done_handler
  mov edi, 0x52
  call set_gate
  ; paging: 0-4 MiB identity, supervisor; the user page and the read-only user page
  mov edi, pt
  mov eax, 3
  mov ecx, 1024
.pte:
  mov [edi], eax
  add edi, 4
  add eax, 4096
  loop .pte
  mov eax, upage
  shr eax, 12
  or dword [pt + eax * 4], 4
  mov eax, uro
  shr eax, 12
  and dword [pt + eax * 4], ~2
  or dword [pt + eax * 4], 4
  mov dword [pd], pt + 7
  mov eax, pd
  mov cr3, eax
  mov eax, cr0
  or eax, 0x80000000 | CR0_WP
  mov cr0, eax

  ; ---- SMEP and SMAP off
  PROBE "smap-off read"
  mov eax, [udata]
  mov [f_val], eax
  END_PROBE_VAL
  PROBE "smep-off exec"
  call ucode_ret
  END_PROBE
  PROBE "smap-off ldt"
  mov ax, SEL_LDT_DATA
  mov ds, ax
  mov ax, SEL_DATA
  mov ds, ax
  END_PROBE
  PRINT "stac/clac: "
  stac
  pushfd
  pop eax
  shr eax, 18
  and eax, 1
  call putdec
  mov al, ' '
  call putc
  clac
  pushfd
  pop eax
  shr eax, 18
  and eax, 1
  call putdec
  call newline

  ; ---- on
  mov eax, cr4
  or eax, CR4_SMEP | CR4_SMAP
  mov cr4, eax
  PRINT "cr4: "
  mov eax, cr4
  and eax, CR4_SMEP | CR4_SMAP
  call puthex
  call newline
  PROBE "read"
  mov eax, [udata]
  END_PROBE
  PROBE "write"
  mov dword [udata + 4], 1
  END_PROBE
  PROBE "exec"
  call ucode_ret
  END_PROBE
  PROBE "stac read"
  stac
  mov eax, [udata]
  mov [f_val], eax
  END_PROBE_VAL
  PROBE "stac write"
  stac
  mov dword [udata + 4], 0xabcd
  mov eax, [udata + 4]
  mov [f_val], eax
  END_PROBE_VAL
  PROBE "clac read"
  stac
  mov eax, [udata]
  clac
  mov eax, [udata + 8]
  END_PROBE
  PROBE "popf read"
  push EFLAGS_AC | 2
  popfd
  mov eax, [udata]
  mov [f_val], eax
  END_PROBE_VAL
  PROBE "iret ac=0 read"
  stac
  mov eax, [udata]
  pushfd
  push cs
  push .after_iret0
  and dword [esp + 8], ~EFLAGS_AC
  iret
.after_iret0:
  mov eax, [udata + 12]
  END_PROBE
  PROBE "iret ac=1 read"
  pushfd
  push cs
  push .after_iret1
  or dword [esp + 8], EFLAGS_AC
  iret
.after_iret1:
  mov eax, [udata]
  mov [f_val], eax
  END_PROBE_VAL
  PROBE "int keeps ac"
  stac
  int 0x50
  END_PROBE_VAL
  PROBE "ro wp=1 ac=1"
  stac
  mov dword [uro], 1
  END_PROBE
  mov eax, cr0
  and eax, ~CR0_WP
  mov cr0, eax
  PROBE "ro wp=0 ac=1"
  stac
  mov dword [uro], 2
  mov eax, [uro]
  mov [f_val], eax
  END_PROBE_VAL
  PROBE "ro wp=0 ac=0"
  mov dword [uro], 3
  END_PROBE
  mov eax, cr0
  or eax, CR0_WP
  mov cr0, eax
  PROBE "ldt ac=0"
  mov ax, SEL_LDT_DATA
  mov ds, ax
  END_PROBE
  PROBE "ldt ac=1"
  stac
  mov eax, [ldt]                        ; explicit, allowed: the TLB holds the page for the kernel
  mov ax, SEL_LDT_DATA
  mov ds, ax
  END_PROBE

  ; ---- CPL 3
  PROBE "cpl3 ldt ac=0"
  USER u_ldt, 2
  END_PROBE
  PROBE "cpl3 ldt ac=1"
  USER u_ldt, EFLAGS_AC | 2
  END_PROBE
  PROBE "cpl3 stac"
  USER u_stac, 2
  END_PROBE
  PROBE "cpl3 clac"
  USER u_clac, 2
  END_PROBE
  PROBE "cpl3 ok"
  USER u_done, 2
  END_PROBE

  ; ---- an interrupt frame pushed on the user page at CPL 0
  PROBE "frame ac=1"
  stac
  mov esp, ustack_top
  int 0x52
  END_PROBE

  PRINT "done"
  call newline
  EXIT 0x21

; EDI = descriptor, EAX = base, CX = limit (< 64 KiB), DL = access byte
make_desc:
  mov [edi], cx
  mov [edi + 2], ax
  shr eax, 16
  mov [edi + 4], al
  mov [edi + 5], dl
  mov byte [edi + 6], 0
  mov [edi + 7], ah
  ret

; the outcome of the last probe
report:
  mov eax, [f_vec]
  cmp eax, 14
  je .pf
  cmp eax, 6
  je .ud
  PRINT "ok"
  ret
.ud:
  PRINT "#UD"
  ret
.pf:
  PRINT "#PF err="
  mov eax, [f_err]
  call puthex
  PRINT " cr2=U+"
  mov eax, [f_cr2]
  sub eax, upage
  call puthex
  ret

; handlers (CPL 0; DS may hold a CPL-3 or LDT selector, or be null after an IRET to CPL 3)
pf_handler:
  push eax
  mov ax, SEL_DATA
  mov ds, ax
  pop eax
  pop dword [f_err]
  mov eax, cr2
  mov [f_cr2], eax
  mov dword [f_vec], 14
  jmp recover
ud_handler:
  mov ax, SEL_DATA
  mov ds, ax
  mov dword [f_vec], 6
  jmp recover
done_handler:
  mov ax, SEL_DATA
  mov ds, ax
  mov dword [f_vec], 0
recover:
  mov ax, SEL_DATA
  mov ds, ax
  mov es, ax
  mov fs, ax
  mov gs, ax
  mov ss, ax
  mov esp, [rec_esp]
  push 2
  popfd
  jmp [rec_eip]
int50_handler:                          ; reads the user page (with the AC of the interrupted code)
  mov eax, [udata]
  mov [f_val], eax
  iret

align 8
gdt:
  dq 0
  dq 0x00cf9a000000ffff                 ; 0x08 code
  dq 0x00cf92000000ffff                 ; 0x10 data
  dq 0x00cffa000000ffff                 ; 0x18 user code
  dq 0x00cff2000000ffff                 ; 0x20 user data
  dq 0                                  ; 0x28 TSS (built at run time)
  dq 0                                  ; 0x30 LDT (built at run time)
gdt_end:
gdtr:
  dw gdt_end - gdt - 1
  dd gdt
f_vec: dd 0
f_err: dd 0
f_cr2: dd 0
f_val: dd 0
rec_esp: dd 0
rec_eip: dd 0
tss: times 0x68 db 0
  times 256 db 0
kstack_top:

; ---- the user page
align 4096
upage:
udata:
  dd UVAL, 0, 0, 0
  times 0x100 - ($ - upage) db 0
ldt:
  dq 0x00cff3000000ffff                 ; data, DPL 3, accessed
ucode_ret:
  ret
u_ldt:
  mov ax, SEL_LDT_DATA
  mov ds, ax
  int 0x52
u_stac:
  stac
  int 0x52
u_clac:
  clac
  int 0x52
u_done:
  int 0x52
  times 0x1000 - ($ - upage) db 0
ustack_top:
uro:
  times 0x1000 db 0

align 4096
pd: times 4096 db 0
pt: times 4096 db 0

KERNEL_END

; A multiboot test kernel for ACPI S3 (suspend to RAM) and the firmware's handover on a wake
; (issue 13). It finds the ACPI tables as an OS does (RSDP in 0xe0000..0xfffff -> RSDT -> FADT ->
; FACS, DSDT, and \_S3's SLP_TYPa in the DSDT's AML), copies a real-mode stub below 1 MiB and
; points the FACS Firmware_Waking_Vector at it (0x800c: CS 0x0800, IP 0x000c), programs an RTC
; alarm two seconds ahead (alarm interrupt on, PM1 RTC_EN), clears PM1 status, writes
; SLP_TYP(S3) | SLP_EN and spins. Lines on COM1:
;   "s3: slp_typ N"                     before it sleeps, with \_S3's SLP_TYPa
;   "woke"                              printed by the stub, in real mode
;   "cs 00000800 ip 0000000c cr0.pe.pg 0"  the stub's CS and IP at entry and CR0 & (PG | PE)
;   "pm1: wak 1 rtc 1 pwrbtn 0"         WAK_STS, RTC_STS and PWRBTN_STS, read back in 32-bit mode
;   "ram kept"                          a marker written before the sleep is still there
; then exits 0x21 through the debug-exit port. The stub goes back to 32-bit protected mode with a
; GDT of its own (lgdt, CR0.PE, a far jump), as an OS's wakeup code does.
;
; Failures: "no RSDP", "no FADT", "no FACS", "no _S3" exit 2; "did not sleep" (the spin ended)
; exits 3.
;
; With "novector" in its command line it leaves the waking vector 0 instead: the wake then has
; nowhere to go, and the firmware resets the machine (as SeaBIOS does). With "xvector" it also
; sets X_Firmware_Waking_Vector, to 32-bit code: ACPI has the firmware prefer that one and enter
; it in flat 32-bit protected mode, paging off (the FACS offers no 64-bit wake); it prints
; "woke in 32-bit mode cr0.pe.pg 1" instead of the stub's two lines. (SeaBIOS only knows the
; real-mode vector.) With "noalarm" it sets no alarm (and prints "s3: no alarm"): another wake
; event must end the sleep — a key typed on the console (no status bit of its own) or the power
; button (PWRBTN_STS).
%include "lib/kernel32.inc"

STUB equ 0x8000                         ; where the real-mode stub is copied (RAM below 1 MiB)
WAKING_VECTOR equ STUB + (stub_entry - stub)
PM1_WAK_STS equ 1 << 15
PM1_RTC_STS equ 1 << 10
PM1_RTC_EN equ 1 << 10
PM1_SLP_EN equ 1 << 13
RTC_INDEX equ 0x70
RTC_DATA equ 0x71
RTC_B_AIE equ 0x20
RTC_B_BINARY equ 0x04
MARKER equ 0x53335333

main:
  mov [mbi], ebx                        ; the multiboot information (its command line)
  lgdt [gdtr]                           ; a GDT of our own (the multiboot one is not ours to keep)
  jmp 0x08:.flat
.flat:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov fs, ax
  mov gs, ax
  call find_tables
  PRINT "s3: slp_typ "
  mov eax, [slp_typ]
  call putdec
  call newline
  mov dword [marker], MARKER

  ; the stub, and the waking vector to it (the 64-bit vector cleared: the 32-bit one is used)
  mov esi, stub
  mov edi, STUB
  mov ecx, stub_end - stub
  cld
  rep movsb
  mov ebx, [facs]
  mov dword [ebx + 12], WAKING_VECTOR
  mov dword [ebx + 24], 0
  mov dword [ebx + 28], 0
  mov esi, 'xvec'
  call cmdline_has
  jnz .novector
  PRINT "s3: 32-bit waking vector"
  call newline
  mov dword [ebx + 24], xresume32
.novector:
  mov esi, 'nove'
  call cmdline_has
  jnz .vector
  PRINT "s3: no waking vector"
  call newline
  mov dword [ebx + 12], 0
.vector:

  mov edx, [pm1_evt]
  mov ax, 0xffff                        ; PM1 status: write 1 to clear every bit
  out dx, ax
  mov esi, 'noal'
  call cmdline_has
  jnz .alarm
  PRINT "s3: no alarm"
  call newline
  jmp .sleep
.alarm:
  call rtc_alarm_in_2s
  mov edx, [pm1_evt]
  add edx, 2
  mov ax, PM1_RTC_EN
  out dx, ax
.sleep:

  mov edx, [pm1_cnt]
  in ax, dx
  and ax, ~((7 << 10) | PM1_SLP_EN)
  mov ecx, [slp_typ]
  shl ecx, 10
  or ax, cx
  out dx, ax                            ; SLP_TYP first, then SLP_EN (as ACPICA does)
  or ax, PM1_SLP_EN
  out dx, ax
  mov ecx, 20000000                     ; the machine sleeps at the write: this never ends
.spin:
  pause
  dec ecx
  jnz .spin
  PRINT "did not sleep"
  call newline
  EXIT 3

; The 32-bit continuation of the stub.
resume32:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov fs, ax
  mov gs, ax
  mov esp, stack_top
  lidt [idtr]
  PRINT "cs "
  movzx eax, word [STUB + s_cs - stub]
  call puthex
  PRINT " ip "
  movzx eax, word [STUB + s_ip - stub]
  sub eax, stub_here - stub_entry       ; the IP of stub_here, made the IP at entry
  call puthex
  PRINT " cr0.pe.pg "
  mov eax, [STUB + s_cr0 - stub]
  and eax, 0x80000001
  call putdec
  call newline
resume_common:
  PRINT "pm1: wak "
  mov edx, [pm1_evt]
  in ax, dx
  movzx ebx, ax
  mov eax, ebx
  shr eax, 15
  and eax, 1
  call putdec
  PRINT " rtc "
  mov eax, ebx
  shr eax, 10
  and eax, 1
  call putdec
  PRINT " pwrbtn "
  mov eax, ebx
  shr eax, 8
  and eax, 1
  call putdec
  call newline
  cmp dword [marker], MARKER
  jne .lost
  PRINT "ram kept"
  call newline
  EXIT 0x21
.lost:
  PRINT "ram lost"
  call newline
  EXIT 4

; Entered at X_Firmware_Waking_Vector: flat 32-bit protected mode, but no GDT of ours yet.
xresume32:
  lgdt [gdtr]
  jmp 0x08:.flat
.flat:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov fs, ax
  mov gs, ax
  mov esp, stack_top
  lidt [idtr]
  PRINT "woke in 32-bit mode cr0.pe.pg "
  mov eax, cr0
  and eax, 0x80000001
  call putdec
  call newline
  jmp resume_common

; ZF set when the multiboot command line holds a word starting with the 4 bytes in ESI
; ("nove" for novector, "xvec" for xvector).
cmdline_has:
  push edi
  mov edi, [mbi]
  test dword [edi], 1 << 2              ; MBI flags: cmdline
  jz .no
  mov edi, [edi + 16]
.scan:
  cmp byte [edi], 0
  je .no
  cmp [edi], esi
  je .done                              ; ZF set
  inc edi
  jmp .scan
.no:
  or edi, edi                           ; a non-null pointer: ZF clear
  jnz .done
  inc edi
.done:
  pop edi
  ret

; RSDP -> RSDT -> FADT -> FACS, DSDT; \_S3's SLP_TYPa from the DSDT's AML.
find_tables:
  mov esi, 0xe0000
.scan:
  cmp dword [esi], 'RSD '
  jne .next
  cmp dword [esi + 4], 'PTR '
  je .rsdp
.next:
  add esi, 16
  cmp esi, 0x100000
  jb .scan
  PRINT "no RSDP"
  jmp fail
.rsdp:
  mov ebx, [esi + 16]                   ; RsdtAddress
  mov ecx, [ebx + 4]
  sub ecx, 36
  shr ecx, 2
  lea edi, [ebx + 36]
.entry:
  test ecx, ecx
  jz .nofadt
  mov eax, [edi]
  cmp dword [eax], 'FACP'
  je .fadt
  add edi, 4
  dec ecx
  jmp .entry
.nofadt:
  PRINT "no FADT"
  jmp fail
.fadt:
  mov ebx, eax
  mov eax, [ebx + 56]                   ; PM1a_EVT_BLK
  mov [pm1_evt], eax
  mov eax, [ebx + 64]                   ; PM1a_CNT_BLK
  mov [pm1_cnt], eax
  mov eax, [ebx + 36]                   ; FIRMWARE_CTRL
  cmp dword [ebx + 4], 140
  jb .facs
  cmp dword [ebx + 132], 0              ; X_FIRMWARE_CTRL, when set, wins
  je .facs
  mov eax, [ebx + 132]
.facs:
  cmp dword [eax], 'FACS'
  je .facsok
  PRINT "no FACS"
  jmp fail
.facsok:
  mov [facs], eax
  mov esi, [ebx + 40]                   ; DSDT
  mov ecx, [esi + 4]
  add ecx, esi
  sub ecx, 9
.aml:
  cmp dword [esi], '_S3_'
  jne .amlnext
  cmp byte [esi + 4], 0x12              ; PackageOp, one-byte PkgLength, NumElements, SLP_TYPa
  jne .amlnext
  movzx eax, byte [esi + 7]
  cmp al, 0x0a                          ; BytePrefix n
  jne .const
  movzx eax, byte [esi + 8]
  jmp .typ
.const:
  cmp al, 1                             ; ZeroOp or OneOp
  ja .amlnext
.typ:
  mov [slp_typ], eax
  ret
.amlnext:
  inc esi
  cmp esi, ecx
  jb .aml
  PRINT "no _S3"
fail:
  call newline
  EXIT 2

; Alarm at (seconds + 2) mod 60, any minute and hour (the "don't care" bytes), AIE on.
rtc_alarm_in_2s:
.uip:
  mov al, 0x0a
  out RTC_INDEX, al
  in al, RTC_DATA
  test al, 0x80                         ; update in progress: wait
  jnz .uip
  mov al, 0x0b
  out RTC_INDEX, al
  in al, RTC_DATA
  mov bl, al                            ; register B
  xor al, al
  out RTC_INDEX, al
  in al, RTC_DATA                       ; seconds
  test bl, RTC_B_BINARY
  jnz .bin
  mov ah, al                            ; BCD -> binary
  shr ah, 4
  and al, 0x0f
  aad                                   ; al = ah * 10 + al
.bin:
  add al, 2
  cmp al, 60
  jb .nowrap
  sub al, 60
.nowrap:
  test bl, RTC_B_BINARY
  jnz .put
  aam                                   ; binary -> BCD: ah = al / 10, al = al % 10
  shl ah, 4
  or al, ah
.put:
  mov cl, al
  mov al, 0x01
  out RTC_INDEX, al
  mov al, cl
  out RTC_DATA, al
  mov al, 0x03
  out RTC_INDEX, al
  mov al, 0xc0
  out RTC_DATA, al
  mov al, 0x05
  out RTC_INDEX, al
  mov al, 0xc0
  out RTC_DATA, al
  mov al, 0x0b
  out RTC_INDEX, al
  mov al, bl
  or al, RTC_B_AIE
  out RTC_DATA, al
  mov al, 0x0c
  out RTC_INDEX, al
  in al, RTC_DATA                       ; clear the flags
  ret

; The real-mode stub, copied to STUB. Entered as firmware hands over: real mode, CS:IP from the
; waking vector, interrupts off; nothing else about the registers is promised.
bits 16
stub:
  times 12 hlt                          ; the vector points past these: IP = 0x000c
stub_entry:
  cli
  mov ax, cs
  mov ss, ax
  mov sp, 0x0ff0                        ; a stack inside the stub's 4 KiB
  mov [cs:s_cs - stub], ax
  call stub_here
stub_here:
  pop ax
  mov [cs:s_ip - stub], ax
  mov eax, cr0
  mov [cs:s_cr0 - stub], eax
  mov si, s_woke - stub
.print:
  mov bl, [cs:si]
  test bl, bl
  jz .printed
  mov dx, 0x3fd
.wait:
  in al, dx
  test al, 0x20
  jz .wait
  mov al, bl
  mov dx, 0x3f8
  out dx, al
  inc si
  jmp .print
.printed:
  o32 lgdt [cs:s_gdtr - stub]
  mov eax, cr0
  or al, 1
  mov cr0, eax
  jmp dword 0x08:resume32
s_woke: db "woke", 10, 0
align 4, db 0
s_cr0: dd 0
s_cs: dw 0
s_ip: dw 0
s_gdtr:
  dw gdt_end - gdt - 1
  dd gdt
stub_end:
bits 32

align 8
gdt:
  dq 0
  dq 0x00cf9a000000ffff                 ; 0x08: flat 32-bit code
  dq 0x00cf92000000ffff                 ; 0x10: flat data
gdt_end:
gdtr:
  dw gdt_end - gdt - 1
  dd gdt

align 4
pm1_evt: dd 0
pm1_cnt: dd 0
facs: dd 0
slp_typ: dd 0
marker: dd 0
mbi: dd 0

KERNEL_END

; A multiboot test kernel for two of issue 13's smaller results, one line each on COM1, then
; exit 0x21 through the debug-exit port:
; - "misc-enable": IA32_MISC_ENABLE keeps a bit of its upper half (bit 34, set and read back);
; - "apic-moved": IA32_APIC_BASE moves the local APIC's page (to 0xfee80000): its version
;   register (low byte) answers there.
%include "lib/kernel32.inc"

MSR_MISC_ENABLE equ 0x1a0
MSR_APIC_BASE equ 0x1b
NEW_BASE equ 0xfee80000

main:
  mov ecx, MSR_MISC_ENABLE
  rdmsr
  or edx, 1 << (34 - 32)
  wrmsr
  xor edx, edx
  rdmsr
  PRINT "misc-enable: "
  mov eax, edx
  shr eax, 34 - 32
  and eax, 1
  call putdec
  call newline

  mov ecx, MSR_APIC_BASE
  rdmsr
  and eax, 0xfff                        ; keep BSP and EN
  or eax, NEW_BASE
  wrmsr
  PRINT "apic-moved: "
  mov eax, [NEW_BASE + 0x30]
  and eax, 0xff
  call puthex
  call newline

  EXIT 0x21

KERNEL_END

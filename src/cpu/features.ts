/**
 * Optional CPU features of the software CPU: one boolean per feature that is not part of the
 * x86-64 baseline. CPUID (src/cpu/system/cpuid.ts) advertises exactly these, and the decoder
 * (src/cpu/core) raises #UD for the instructions of a feature that is off — so a feature is
 * switched on here only once its instructions are implemented and tested.
 *
 * Baseline (always advertised, not listed here): FPU, TSC, MSR, PAE, CX8, APIC, PGE, CMOV,
 * PAT, PSE, PSE36, MTRR, CLFLUSH, MMX, FXSR, SSE, SSE2, LM, SYSCALL, NX, LAHF_LM.
 */
export const features = {
  /**
   * KVM's paravirtual clock (CPUID 0x40000000 "KVMKVMKVM", MSR_KVM_SYSTEM_TIME_NEW): gives the
   * guest its TSC frequency and a stable clocksource, so a slow software CPU that sometimes
   * delivers timer ticks late does not make Linux's clocksource watchdog distrust the TSC.
   */
  kvmClock: true,
  /** CPUID.1:ECX.SSE3 — SSE3 instructions (ADDSUBPS, HADDPS, MOVDDUP, LDDQU, ...). */
  sse3: true,
  /** CPUID.1:ECX.SSSE3 — PSHUFB, PALIGNR, ... */
  ssse3: true,
  /** CPUID.1:ECX.SSE4_1 / SSE4_2. With SSE3, SSSE3, CX16, POPCNT and LAHF_LM: x86-64-v2. */
  sse41: true,
  sse42: true,
  /** CPUID.1:ECX.CX16 — CMPXCHG16B. */
  cx16: true,
  /** CPUID.1:ECX.POPCNT. */
  popcnt: true,
  /** CPUID.1:ECX.MOVBE. */
  movbe: false,
  /** CPUID.80000001:ECX.ABM/LZCNT. */
  lzcnt: false,
  /** CPUID.7.0:EBX.BMI1 / BMI2. */
  bmi1: false,
  bmi2: false,
  /** CPUID.7.0:EBX.ERMS — enhanced REP MOVSB/STOSB (a hint only: no new instructions). */
  erms: false,
  /** CPUID.7.0:EBX.FSGSBASE — RDFSBASE/WRFSBASE/RDGSBASE/WRGSBASE (and CR4.FSGSBASE). */
  fsgsbase: true,
  /** CPUID.80000001:EDX.RDTSCP — RDTSCP and the TSC_AUX MSR. */
  rdtscp: true,
  /** CPUID.7.0:ECX.RDPID (reads TSC_AUX too). */
  rdpid: true,
  /** CPUID.7.0:EBX.CLFLUSHOPT / CLWB — 66 0F AE /7 and /6 (memory): address checks only, like CLFLUSH. */
  clflushopt: true,
  clwb: true,
  /** CPUID.7.0:ECX.UMIP — CR4.UMIP: SGDT SIDT SLDT SMSW STR raise #GP(0) at CPL > 0. */
  umip: true,
  /** CPUID.7.0:EBX.SMEP — CR4.SMEP: no supervisor-mode instruction fetch from user pages. */
  smep: true,
  /** CPUID.7.0:EBX.SMAP — CR4.SMAP (no supervisor-mode data access to user pages unless EFLAGS.AC), STAC/CLAC. */
  smap: true,
  /** CPUID.1:EDX.SEP — SYSENTER/SYSEXIT and the SYSENTER_* MSRs are always stored; this gates the instructions. */
  sep: false,
  /**
   * CPUID.1:ECX.XSAVE — XSAVE/XRSTOR/XSAVEOPT, XGETBV/XSETBV and CR4.OSXSAVE, for the x87 and SSE
   * state components (CPUID leaf 0xD; XGETBV with ECX = 1 too). No XSAVEC/XSAVES.
   */
  xsave: true,
  /** CPUID.1:ECX.MONITOR — MONITOR/MWAIT. */
  monitor: false,
  /** CPUID.1:EDX.MCE + MCA — machine-check architecture with zero banks (MCG_CAP reads 0). */
  mca: true,
  /**
   * CPUID leaf 0x15 (TSC/crystal ratio): lets Linux skip PIT calibration of the TSC. Linux also
   * takes the LAPIC timer frequency from the crystal clock reported here (TSC_CRYSTAL_HZ in
   * cpuid.ts): turn this on only when the LAPIC timer counts at that frequency.
   */
  tscLeaf15: false,
};

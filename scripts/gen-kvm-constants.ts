/**
 * Generates src/kvm/constants.generated.ts: every KVM ioctl number, struct size/offset and
 * constant the KVM engine uses, plus the few libc values its binding needs (signals, mmap,
 * memfd, POSIX timers). Nothing is typed by hand: a tiny C program is compiled against
 * /usr/include/linux/kvm.h (Debian package `linux-libc-dev`) and the host's libc headers, and
 * its output is the TypeScript file. tests/kvm/constants.test.ts re-runs this and checks the
 * committed file still matches.
 *
 *   node --import tsx scripts/gen-kvm-constants.ts          # rewrite the committed file
 *   node --import tsx scripts/gen-kvm-constants.ts --check  # exit 1 if it is stale
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const KVM_HEADER = '/usr/include/linux/kvm.h';
export const OUTPUT_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'kvm', 'constants.generated.ts');

/** Plain `#define`s / enum values, emitted under their own names. */
const VALUES = [
  // system ioctls
  'KVM_API_VERSION', 'KVM_GET_API_VERSION', 'KVM_CREATE_VM', 'KVM_CHECK_EXTENSION',
  'KVM_GET_VCPU_MMAP_SIZE', 'KVM_GET_SUPPORTED_CPUID', 'KVM_GET_MSR_INDEX_LIST',
  // vm ioctls
  'KVM_CREATE_VCPU', 'KVM_SET_USER_MEMORY_REGION', 'KVM_SET_TSS_ADDR', 'KVM_SET_IDENTITY_MAP_ADDR',
  'KVM_CREATE_IRQCHIP', 'KVM_IRQ_LINE', 'KVM_IRQ_LINE_STATUS', 'KVM_CREATE_PIT2', 'KVM_IRQFD', 'KVM_IOEVENTFD',
  'KVM_SIGNAL_MSI', 'KVM_SET_GSI_ROUTING',
  // vcpu ioctls
  'KVM_RUN', 'KVM_GET_REGS', 'KVM_SET_REGS', 'KVM_GET_SREGS', 'KVM_SET_SREGS', 'KVM_GET_MSRS', 'KVM_SET_MSRS',
  'KVM_SET_CPUID2', 'KVM_GET_CPUID2', 'KVM_SET_SIGNAL_MASK', 'KVM_GET_FPU', 'KVM_SET_FPU', 'KVM_GET_LAPIC', 'KVM_SET_LAPIC',
  'KVM_GET_MP_STATE', 'KVM_SET_MP_STATE',
  // snapshots: vcpu and vm state
  'KVM_GET_XSAVE', 'KVM_SET_XSAVE', 'KVM_GET_XSAVE2', 'KVM_GET_XCRS', 'KVM_SET_XCRS', 'KVM_GET_VCPU_EVENTS',
  'KVM_SET_VCPU_EVENTS', 'KVM_GET_DEBUGREGS', 'KVM_SET_DEBUGREGS', 'KVM_GET_TSC_KHZ', 'KVM_SET_TSC_KHZ',
  'KVM_GET_IRQCHIP', 'KVM_SET_IRQCHIP', 'KVM_GET_PIT2', 'KVM_SET_PIT2', 'KVM_GET_CLOCK', 'KVM_SET_CLOCK',
  'KVM_IRQCHIP_PIC_MASTER', 'KVM_IRQCHIP_PIC_SLAVE', 'KVM_IRQCHIP_IOAPIC', 'KVM_KVMCLOCK_CTRL',
  'KVM_CAP_XSAVE', 'KVM_CAP_XSAVE2', 'KVM_CAP_XCRS', 'KVM_CAP_VCPU_EVENTS', 'KVM_CAP_DEBUGREGS', 'KVM_CAP_ADJUST_CLOCK',
  'KVM_CAP_PIT_STATE2', 'KVM_CAP_MP_STATE', 'KVM_CAP_GET_TSC_KHZ', 'KVM_CAP_TSC_CONTROL',
  // capabilities
  'KVM_CAP_IRQCHIP', 'KVM_CAP_HLT', 'KVM_CAP_USER_MEMORY', 'KVM_CAP_SET_TSS_ADDR', 'KVM_CAP_EXT_CPUID', 'KVM_CAP_NR_VCPUS',
  'KVM_CAP_MAX_VCPUS', 'KVM_CAP_NR_MEMSLOTS', 'KVM_CAP_PIT2', 'KVM_CAP_IRQ_ROUTING', 'KVM_CAP_IRQFD', 'KVM_CAP_IOEVENTFD',
  'KVM_CAP_SIGNAL_MSI', 'KVM_CAP_IMMEDIATE_EXIT', 'KVM_CAP_SET_IDENTITY_MAP_ADDR',
  // exit reasons
  'KVM_EXIT_UNKNOWN', 'KVM_EXIT_EXCEPTION', 'KVM_EXIT_IO', 'KVM_EXIT_HYPERCALL', 'KVM_EXIT_DEBUG', 'KVM_EXIT_HLT',
  'KVM_EXIT_MMIO', 'KVM_EXIT_IRQ_WINDOW_OPEN', 'KVM_EXIT_SHUTDOWN', 'KVM_EXIT_FAIL_ENTRY', 'KVM_EXIT_INTR',
  'KVM_EXIT_SET_TPR', 'KVM_EXIT_TPR_ACCESS', 'KVM_EXIT_NMI', 'KVM_EXIT_INTERNAL_ERROR', 'KVM_EXIT_SYSTEM_EVENT',
  'KVM_EXIT_IOAPIC_EOI', 'KVM_EXIT_X86_RDMSR', 'KVM_EXIT_X86_WRMSR',
  'KVM_EXIT_IO_IN', 'KVM_EXIT_IO_OUT',
  'KVM_INTERNAL_ERROR_EMULATION', 'KVM_INTERNAL_ERROR_SIMUL_EX', 'KVM_INTERNAL_ERROR_DELIVERY_EV',
  'KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON',
  'KVM_SYSTEM_EVENT_SHUTDOWN', 'KVM_SYSTEM_EVENT_RESET', 'KVM_SYSTEM_EVENT_CRASH',
  'KVM_MP_STATE_RUNNABLE', 'KVM_MP_STATE_UNINITIALIZED', 'KVM_MP_STATE_INIT_RECEIVED', 'KVM_MP_STATE_HALTED',
  'KVM_MP_STATE_SIPI_RECEIVED',
  'KVM_PIT_SPEAKER_DUMMY', 'KVM_PIT_FLAGS_SPEAKER_DATA_ON', 'KVM_VCPUEVENT_VALID_NMI_PENDING', 'KVM_VCPUEVENT_VALID_SHADOW',
  'KVM_X86_SHADOW_INT_MOV_SS', 'KVM_X86_SHADOW_INT_STI', 'KVM_CPUID_FLAG_SIGNIFCANT_INDEX', 'KVM_MEM_READONLY', 'KVM_IRQFD_FLAG_DEASSIGN', 'KVM_IOEVENTFD_FLAG_DATAMATCH',
  'KVM_IOEVENTFD_FLAG_PIO', 'KVM_IOEVENTFD_FLAG_DEASSIGN', 'KVM_APIC_REG_SIZE',
  // libc: files, memory, signals, timers, errno
  'O_RDWR', 'O_CLOEXEC', 'MFD_CLOEXEC', 'PROT_READ', 'PROT_WRITE', 'PROT_NONE', 'MAP_SHARED', 'MAP_PRIVATE',
  'MAP_ANONYMOUS', 'MAP_FIXED', 'MAP_NORESERVE', 'SIGUSR2', 'SIG_BLOCK', 'SIG_UNBLOCK', 'SIG_SETMASK', 'SA_RESTART',
  'SA_SIGINFO', 'SIGEV_SIGNAL', 'SIGEV_THREAD_ID', 'CLOCK_MONOTONIC', 'TIMER_ABSTIME', 'SYS_gettid',
  'EFD_CLOEXEC', 'EFD_NONBLOCK',
  'EINTR', 'EAGAIN', 'E2BIG', 'ENOENT', 'EACCES', 'EPERM', 'ENOMEM', 'EEXIST', 'EINVAL',
];

/** [generated name, C expression] pairs: sizes and field offsets. */
const LAYOUT: [string, string][] = [];
function struct(prefix: string, type: string, fields: string[]): void {
  LAYOUT.push([`${prefix}_SIZE`, `sizeof(${type})`]);
  for (const f of fields) LAYOUT.push([`${prefix}_${f.replace(/^_+|(?<=\.)_+/g, '').replace(/[.[\]]+/g, '_').replace(/_$/, '').toUpperCase()}`, `offsetof(${type}, ${f})`]);
}
struct('KVM_RUN', 'struct kvm_run', [
  'request_interrupt_window', 'immediate_exit', 'exit_reason', 'ready_for_interrupt_injection', 'if_flag', 'cr8',
  'apic_base', 'hw.hardware_exit_reason', 'fail_entry.hardware_entry_failure_reason', 'fail_entry.cpu',
  'ex.exception', 'ex.error_code',
  'io.direction', 'io.size', 'io.port', 'io.count', 'io.data_offset',
  'mmio.phys_addr', 'mmio.data', 'mmio.len', 'mmio.is_write',
  'internal.suberror', 'internal.ndata', 'internal.data', 'system_event.type', 'system_event.ndata',
]);
struct('KVM_REGS', 'struct kvm_regs', [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags',
]);
struct('KVM_SREGS', 'struct kvm_sregs', [
  'cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt', 'gdt', 'idt', 'cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base',
  'interrupt_bitmap',
]);
struct('KVM_SEGMENT', 'struct kvm_segment', [
  'base', 'limit', 'selector', 'type', 'present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable',
]);
struct('KVM_DTABLE', 'struct kvm_dtable', ['base', 'limit']);
struct('KVM_CPUID2', 'struct kvm_cpuid2', ['nent', 'entries']);
struct('KVM_CPUID_ENTRY2', 'struct kvm_cpuid_entry2', ['function', 'index', 'flags', 'eax', 'ebx', 'ecx', 'edx']);
struct('KVM_MSRS', 'struct kvm_msrs', ['nmsrs', 'entries']);
struct('KVM_MSR_ENTRY', 'struct kvm_msr_entry', ['index', 'data']);
struct('KVM_USERSPACE_MEMORY_REGION', 'struct kvm_userspace_memory_region', [
  'slot', 'flags', 'guest_phys_addr', 'memory_size', 'userspace_addr',
]);
struct('KVM_IRQ_LEVEL', 'struct kvm_irq_level', ['irq', 'level']);
struct('KVM_PIT_CONFIG', 'struct kvm_pit_config', ['flags']);
struct('KVM_FPU', 'struct kvm_fpu', ['fcw', 'fsw', 'mxcsr']);
struct('KVM_LAPIC_STATE', 'struct kvm_lapic_state', ['regs']);
struct('KVM_MP_STATE', 'struct kvm_mp_state', ['mp_state']);
struct('KVM_XSAVE', 'struct kvm_xsave', ['region']);
struct('KVM_XCRS', 'struct kvm_xcrs', ['nr_xcrs', 'flags', 'xcrs']);
struct('KVM_XCR', 'struct kvm_xcr', ['xcr', 'value']);
struct('KVM_VCPU_EVENTS', 'struct kvm_vcpu_events', [
  'flags', 'exception.injected', 'exception.pending', 'interrupt.injected', 'interrupt.shadow', 'nmi.injected', 'nmi.pending',
  'nmi.masked', 'smi.smm', 'triple_fault.pending',
]);
struct('KVM_DEBUGREGS', 'struct kvm_debugregs', ['db', 'dr6', 'dr7', 'flags']);
struct('KVM_IRQCHIP', 'struct kvm_irqchip', ['chip_id', 'chip']);
struct('KVM_PIT_STATE2', 'struct kvm_pit_state2', ['channels', 'flags']);
// the in-kernel PIC, IOAPIC and PIT as a snapshot carries them (converted to and from the bt
// engine's device models when a snapshot moves between the engines)
struct('KVM_PIC_STATE', 'struct kvm_pic_state', [
  'last_irr', 'irr', 'imr', 'isr', 'priority_add', 'irq_base', 'read_reg_select', 'poll', 'special_mask', 'init_state',
  'auto_eoi', 'rotate_on_auto_eoi', 'special_fully_nested_mode', 'init4', 'elcr', 'elcr_mask',
]);
struct('KVM_IOAPIC_STATE', 'struct kvm_ioapic_state', ['base_address', 'ioregsel', 'id', 'irr', 'redirtbl']);
struct('KVM_PIT_CHANNEL_STATE', 'struct kvm_pit_channel_state', [
  'count', 'latched_count', 'count_latched', 'status_latched', 'status', 'read_state', 'write_state', 'write_latch', 'rw_mode',
  'mode', 'bcd', 'gate', 'count_load_time',
]);
struct('KVM_CLOCK_DATA', 'struct kvm_clock_data', ['clock', 'flags']);
struct('KVM_SIGNAL_MASK', 'struct kvm_signal_mask', ['len', 'sigset']);
struct('KVM_IRQFD', 'struct kvm_irqfd', ['fd', 'gsi', 'flags', 'resamplefd']);
struct('KVM_IOEVENTFD', 'struct kvm_ioeventfd', ['datamatch', 'addr', 'len', 'fd', 'flags']);
struct('KVM_MSI', 'struct kvm_msi', ['address_lo', 'address_hi', 'data', 'flags', 'devid', 'pad']);
struct('SIGACTION', 'struct sigaction', ['sa_handler', 'sa_mask', 'sa_flags']);
struct('SIGEVENT', 'struct sigevent', ['sigev_value', 'sigev_signo', 'sigev_notify', '_sigev_un._tid']);
struct('ITIMERSPEC', 'struct itimerspec', ['it_interval', 'it_value']);
struct('TIMESPEC', 'struct timespec', ['tv_sec', 'tv_nsec']);
LAYOUT.push(['SIGSET_T_SIZE', 'sizeof(sigset_t)'], ['KERNEL_SIGSET_SIZE', '(_NSIG / 8)']);

function cProgram(): string {
  const lines = [
    '#define _GNU_SOURCE',
    '#include <stdio.h>',
    '#include <stddef.h>',
    '#include <errno.h>',
    '#include <fcntl.h>',
    '#include <signal.h>',
    '#include <time.h>',
    '#include <sys/mman.h>',
    '#include <sys/eventfd.h>',
    '#include <sys/syscall.h>',
    '#include <linux/kvm.h>',
    '#define P(name, expr) printf("export const %s = 0x%llx;\\n", name, (unsigned long long)(expr))',
    'int main(void) {',
    ...VALUES.map((n) => `  P("${n}", ${n});`),
    ...LAYOUT.map(([n, e]) => `  P("${n}", ${e});`),
    '  return 0;',
    '}',
  ];
  return lines.join('\n') + '\n';
}

/** Compile and run the probe; returns the TypeScript source of constants.generated.ts. */
export function generate(): string {
  const dir = mkdtempSync(join(tmpdir(), 'typevisor-kvm-constants-'));
  try {
    const src = join(dir, 'probe.c');
    const exe = join(dir, 'probe');
    writeFileSync(src, cProgram());
    execFileSync('gcc', ['-O0', '-Wall', '-o', exe, src], { stdio: ['ignore', 'ignore', 'pipe'] });
    const body = execFileSync(exe, { encoding: 'utf8' });
    return [
      '// GENERATED by scripts/gen-kvm-constants.ts from /usr/include/linux/kvm.h and libc headers',
      '// (x86-64 Linux). Do not edit: run `node --import tsx scripts/gen-kvm-constants.ts`.',
      body,
    ].join('\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** True when a compiler and the kvm header are present, so the file can be regenerated. */
export function canGenerate(): boolean {
  if (!existsSync(KVM_HEADER)) return false;
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const text = generate();
  if (process.argv.includes('--check')) {
    const current = existsSync(OUTPUT_PATH) ? readFileSync(OUTPUT_PATH, 'utf8') : '';
    if (current !== text) {
      console.error(`${OUTPUT_PATH} is stale: run node --import tsx scripts/gen-kvm-constants.ts`);
      process.exit(1);
    }
  } else {
    writeFileSync(OUTPUT_PATH, text);
    console.log(`wrote ${OUTPUT_PATH}`);
  }
}

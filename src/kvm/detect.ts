/**
 * Can the KVM engine run an ordinary guest here? `--engine auto` picks kvm only when /dev/kvm
 * opens AND the host CPU has hardware virtualization (vmx/svm) driven by kvm_intel/kvm_amd.
 * A `kvm_pvm` host (a VM without nested VT-x/AMD-V) has a working /dev/kvm that runs ordinary
 * guests through KVM's instruction emulator (~0.75 µs an instruction, stopping at the first
 * instruction it cannot emulate): fine for tiny test guests, useless for Linux.
 */
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';

export interface KvmAvailability {
  /** /dev/kvm opens and the host has hardware virtualization: kvm can boot ordinary kernels. */
  usable: boolean;
  /** The CPU has vmx or svm and the KVM module is kvm_intel or kvm_amd. */
  hardware: boolean;
  /** /dev/kvm opens (small guests would run even without `hardware`). */
  opens: boolean;
  /** The KVM module in use, if known: kvm_intel, kvm_amd, kvm_pvm... */
  module: string | undefined;
  /** One line: why kvm is or is not used, and the fix when there is one. */
  reason: string;
}

export interface DetectPaths {
  devKvm?: string;
  cpuinfo?: string;
  sysModule?: string;
  /** How to try opening the device (tests inject errors); default open + close read-write. */
  openDevice?: (path: string) => void;
}

const KNOWN_MODULES = ['kvm_intel', 'kvm_amd', 'kvm_pvm'];

export function kvmAvailability(paths: DetectPaths = {}): KvmAvailability {
  const devKvm = paths.devKvm ?? '/dev/kvm';
  const sysModule = paths.sysModule ?? '/sys/module';
  let cpuFlag: string | undefined;
  try {
    const flags = new Set(
      readFileSync(paths.cpuinfo ?? '/proc/cpuinfo', 'utf8')
        .split('\n')
        .filter((l) => /^flags\s*:/.test(l))
        .flatMap((l) => l.split(':')[1]!.trim().split(/\s+/)),
    );
    cpuFlag = flags.has('vmx') ? 'vmx' : flags.has('svm') ? 'svm' : undefined;
  } catch {
    cpuFlag = undefined;
  }
  const module = KNOWN_MODULES.find((m) => existsSync(`${sysModule}/${m}`));
  const hardware = cpuFlag !== undefined && (module === 'kvm_intel' || module === 'kvm_amd');

  let openError: string | undefined;
  try {
    (paths.openDevice ?? ((p: string) => closeSync(openSync(p, 'r+'))))(devKvm);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      openError = `${devKvm} does not exist (${cpuFlag ? `load ${cpuFlag === 'vmx' ? 'kvm_intel' : 'kvm_amd'}` : 'this CPU has no vmx/svm'}), so the bt engine runs the guest`;
    } else if (code === 'EACCES' || code === 'EPERM') {
      openError = `${devKvm}: permission denied; add your user to group \`kvm\` (sudo usermod -aG kvm $USER, then log in again), or use --engine bt`;
    } else {
      openError = `${devKvm} does not open (${code ?? String(e)}); use --engine bt`;
    }
  }
  const opens = openError === undefined;
  let reason: string;
  if (!opens) reason = openError!;
  else if (hardware) reason = `${devKvm} with ${module} (${cpuFlag}): hardware virtualization available`;
  else if (module === 'kvm_pvm') {
    reason = `${devKvm} is kvm_pvm (no vmx/svm on this CPU): ordinary kernels only crawl through KVM's instruction emulator, so the bt engine runs the guest`;
  } else {
    reason = `${devKvm} opens but ${cpuFlag ? `the module is ${module ?? 'unknown'}, not kvm_intel/kvm_amd` : 'this CPU has no vmx/svm'}, so the bt engine runs the guest`;
  }
  return { usable: opens && hardware, hardware, opens, module, reason };
}

/**
 * ACPI S3 with the real Debian kernel on the bt engine: the guest offers `mem` (the DSDT's \_S3),
 * suspends, and resumes through its real-mode wakeup code at the FACS waking vector — once woken
 * by an RTC alarm (/sys/class/rtc/rtc0/wakealarm: RTC_STS with RTC_EN), once by a key typed on
 * the console — and its shell answers afterwards.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { VmProcess } from '../support/guest-process.js';

const BOOT_TIMEOUT = 15 * 60_000;
const CMD_TIMEOUT = 5 * 60_000;

let vm: VmProcess | undefined;
afterEach(() => vm?.kill());

describe('ACPI S3 with the Debian cloud kernel on the bt engine', () => {
  it('suspends to RAM and resumes on an RTC alarm and on console input', async () => {
    const v = (vm = new VmProcess(['--engine', 'bt']));
    await v.waitFor(/TYPEVISOR-INIT-OK/, BOOT_TIMEOUT);
    expect((await v.sh('cat /sys/power/state', CMD_TIMEOUT)).split(' ')).toContain('mem');

    // the RTC alarm: the write to /sys/power/state returns once the guest has resumed
    const alarm = await v.sh('echo +2 > /sys/class/rtc/rtc0/wakealarm && echo mem > /sys/power/state; echo "rc $?"', CMD_TIMEOUT);
    expect(alarm).toMatch(/ACPI: PM: Waking up from system sleep state S3[\s\S]*PM: suspend exit[\s\S]*rc 0$/);

    // a key typed while suspended; typed again until it lands after the guest went to sleep
    // (a key that arrives before is only input, and no alarm is set this time)
    const from = v.output.length;
    v.send('echo mem > /sys/power/state; echo "key $?"\n');
    const keys = setInterval(() => v.send('\n'), 2000);
    try {
      await v.waitFor(/PM: suspend exit[\s\S]*key 0/, CMD_TIMEOUT, from);
    } finally {
      clearInterval(keys);
    }
    expect(await v.sh('echo $((6*7))', CMD_TIMEOUT)).toBe('42');
    v.send('poweroff\n');
    expect((await v.exited).code).toBe(0);
  }, BOOT_TIMEOUT + 4 * CMD_TIMEOUT);
});

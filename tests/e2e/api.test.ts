/**
 * The Firecracker-compatible API end to end, with a real HTTP client over the Unix socket, in the
 * order Firecracker's getting-started guide uses: boot-source, machine-config, drives, actions
 * InstanceStart — to the default guest's shell on the process's console. A guest process counts;
 * then pause, snapshot/create, kill the process. A new `typevisor serve` loads the snapshot
 * (resume_vm) and the count goes on; a command typed on its console answers; the power button
 * (SendCtrlAltDel) ends it with status 0.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { apiCall, apiRequest } from '../../src/api/client.js';
import { prepareDefaultGuest } from '../../src/guest/default-guest.js';
import { CLI, VmProcess } from '../support/guest-process.js';

const TIMEOUT = 8 * 60_000;
const WAIT = 4 * 60_000;
const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-api-e2e-'));
const procs: VmProcess[] = [];
afterAll(() => {
  for (const p of procs) p.kill();
  rmSync(dir, { recursive: true, force: true });
});

/** `typevisor serve --api-sock SOCK` from the sources, driven over pipes. */
function serve(sock: string): VmProcess {
  const p = new VmProcess([], {}, [process.execPath, ['--v8-pool-size=1', '--import', 'tsx', CLI, 'serve', '--api-sock', sock]]);
  procs.push(p);
  return p;
}

async function socketUp(sock: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      await apiRequest(sock, 'GET', '/');
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${sock} did not come up`);
}

describe('the Firecracker-compatible API over a Unix socket', () => {
  it('boots the default guest, pauses, snapshots; a new process restores it and the guest goes on', async () => {
    const guest = await prepareDefaultGuest();
    const data = path.join(dir, 'data.img');
    writeFileSync(data, Buffer.alloc(4 << 20));
    const sock1 = path.join(dir, 'one.sock');
    const vm1 = serve(sock1);
    await socketUp(sock1);
    expect(await apiCall(sock1, 'GET', '/')).toMatchObject({ state: 'Not started' });
    await apiCall(sock1, 'PUT', '/boot-source', { kernel_image_path: guest.kernelPath, initrd_path: guest.initrdPath, boot_args: 'console=ttyS0 reboot=k panic=-1' });
    await apiCall(sock1, 'PUT', '/machine-config', { vcpu_count: 1, mem_size_mib: 256 });
    await apiCall(sock1, 'PUT', '/drives/data', { drive_id: 'data', path_on_host: data, is_root_device: false, is_read_only: false });
    await apiCall(sock1, 'PUT', '/actions', { action_type: 'InstanceStart' });
    expect(await apiCall(sock1, 'GET', '/')).toMatchObject({ state: 'Running' });
    // configuration after start is refused, the VM untouched
    expect((await apiRequest(sock1, 'PUT', '/machine-config', { vcpu_count: 1, mem_size_mib: 512 })).status).toBe(400);
    await vm1.waitFor(/typevisor:~# /, WAIT);
    vm1.send('echo disk $(cat /sys/block/vda/size); i=0; while true; do i=$((i+1)); echo "count $i"; sleep 0.3; done &\n');
    await vm1.waitFor(/disk 8192/, WAIT);
    await vm1.waitFor(/count 4\b/, WAIT);
    // a snapshot of a running VM is refused
    expect((await apiRequest(sock1, 'PUT', '/snapshot/create', { snapshot_path: path.join(dir, 's'), mem_file_path: path.join(dir, 'm') })).status).toBe(400);
    await apiCall(sock1, 'PATCH', '/vm', { state: 'Paused' });
    expect(await apiCall(sock1, 'GET', '/')).toMatchObject({ state: 'Paused' });
    const counted = Math.max(...[...vm1.output.matchAll(/count (\d+)/g)].map((m) => Number(m[1])));
    const state = path.join(dir, 'vm.snapshot');
    const mem = path.join(dir, 'vm.mem');
    await apiCall(sock1, 'PUT', '/snapshot/create', { snapshot_type: 'Full', snapshot_path: state, mem_file_path: mem });
    vm1.kill();
    await vm1.exited;

    const sock2 = path.join(dir, 'two.sock');
    const vm2 = serve(sock2);
    await socketUp(sock2);
    await apiCall(sock2, 'PUT', '/snapshot/load', { snapshot_path: state, mem_backend: { backend_type: 'File', backend_path: mem }, resume_vm: true });
    expect(await apiCall(sock2, 'GET', '/')).toMatchObject({ state: 'Running' });
    // the count continues where it was: the next number, not 1
    const next = await vm2.waitFor(/count (\d+)/, WAIT);
    expect(Number(next[1])).toBe(counted + 1);
    vm2.send('echo restored $((6 * 7)) $(cat /sys/block/vda/size)\n');
    await vm2.waitFor(/restored 42 8192/, WAIT);
    await apiCall(sock2, 'PUT', '/actions', { action_type: 'SendCtrlAltDel' });
    expect((await vm2.exited).code).toBe(0);
    expect(vm2.output).toContain('power button pressed');
  }, TIMEOUT);
});

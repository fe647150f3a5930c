import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { apiRequest } from './client.js';
import { ApiServer } from './server.js';

const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-api-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const put = (s: ApiServer, p: string, body: unknown) => s.handle('PUT', p, typeof body === 'string' ? body : JSON.stringify(body));
const faultOf = (r: { body?: unknown }): string => (r.body as { fault_message: string }).fault_message;

describe('the Firecracker-compatible API (no VM started)', () => {
  it('answers GET / with the instance state, and GET /version', async () => {
    const s = new ApiServer();
    expect(await s.handle('GET', '/', '')).toEqual({ status: 200, body: { id: 'anonymous-instance', state: 'Not started', vmm_version: '0.1.0', app_name: 'typevisor' } });
    expect((await s.handle('GET', '/version', '')).status).toBe(200);
  });

  it('takes pre-boot configuration with 204 and reports it in GET /vm/config', async () => {
    const s = new ApiServer();
    expect(await put(s, '/boot-source', { kernel_image_path: '/k', boot_args: 'console=ttyS0' })).toEqual({ status: 204 });
    expect(await put(s, '/machine-config', { vcpu_count: 1, mem_size_mib: 256 })).toEqual({ status: 204 });
    expect(await s.handle('PATCH', '/machine-config', JSON.stringify({ mem_size_mib: 384 }))).toEqual({ status: 204 });
    expect(await put(s, '/drives/rootfs', { drive_id: 'rootfs', path_on_host: '/img', is_root_device: true, is_read_only: false })).toEqual({ status: 204 });
    expect(await put(s, '/drives/data', { drive_id: 'data', path_on_host: '/data', is_root_device: false })).toEqual({ status: 204 });
    expect(await put(s, '/network-interfaces/eth0', { iface_id: 'eth0', typevisor_net: 'user' })).toEqual({ status: 204 });
    expect(await put(s, '/entropy', {})).toEqual({ status: 204 });
    expect(await put(s, '/logger', { log_path: '/tmp/x', level: 'Info' })).toEqual({ status: 204 });
    expect(await put(s, '/metrics', { metrics_path: '/tmp/m' })).toEqual({ status: 204 });
    const cfg = (await s.handle('GET', '/vm/config', '')).body as Record<string, unknown>;
    expect(cfg['machine-config']).toEqual({ vcpu_count: 1, mem_size_mib: 384, smt: false, track_dirty_pages: false });
    expect((cfg['drives'] as unknown[]).length).toBe(2);
    expect(s.vmConfig()).toMatchObject({
      kernel: '/k', cmdline: 'console=ttyS0 root=/dev/vda rw', memoryBytes: 384 * 1024 * 1024, cpus: 1, engine: 'bt',
      disks: [{ path: '/img', readOnly: false, snapshot: false }, { path: '/data', readOnly: false, snapshot: false }],
      net: { mode: 'user', publish: [] },
    });
    expect(s.vmConfig().net).not.toHaveProperty('mac'); // Vm.create gives the default
  });

  it('gives the VM the guest_mac of the network interface (lower case)', async () => {
    const s = new ApiServer();
    expect(await put(s, '/boot-source', { kernel_image_path: '/k' })).toEqual({ status: 204 });
    expect(await put(s, '/network-interfaces/eth0', { iface_id: 'eth0', guest_mac: '06:00:AC:10:00:02' })).toEqual({ status: 204 });
    expect(s.vmConfig().net).toEqual({ mode: 'user', publish: [], mac: '06:00:ac:10:00:02' });
  });

  it('gives the VM a tap device for host_dev_name, as Firecracker does', async () => {
    const s = new ApiServer();
    expect(await put(s, '/boot-source', { kernel_image_path: '/k' })).toEqual({ status: 204 });
    expect(await put(s, '/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: 'tap0', guest_mac: '06:00:AC:10:00:02' })).toEqual({ status: 204 });
    expect(s.vmConfig().net).toEqual({ mode: 'tap', name: 'tap0', mac: '06:00:ac:10:00:02' });
  });

  it.each([
    ['malformed JSON', '/boot-source', '{"kernel_image_path": ', /not valid JSON/],
    ['an unknown field', '/boot-source', { kernel_image_path: '/k', bogus: 1 }, /bogus/],
    ['a missing field', '/machine-config', { vcpu_count: 1 }, /mem_size_mib/],
    ['a wrong type', '/machine-config', { vcpu_count: '1', mem_size_mib: 128 }, /vcpu_count/],
    ['too many vCPUs', '/machine-config', { vcpu_count: 33, mem_size_mib: 128 }, /vcpu_count/],
    ['smt on', '/machine-config', { vcpu_count: 2, mem_size_mib: 128, smt: true }, /smt/],
    ['an unknown CPU model', '/machine-config', { vcpu_count: 1, mem_size_mib: 128, typevisor_cpu_model: 'skylake' }, /typevisor_cpu_model/],
    ['an unknown engine to resume on', '/snapshot/load', { snapshot_path: '/x', mem_file_path: '/y', typevisor_engine: 'qemu' }, /typevisor_engine/],
    ['a drive whose id differs from the path', '/drives/a', { drive_id: 'b', path_on_host: '/x', is_root_device: false }, /does not match/],
    ['a tap device and the user network at once', '/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: 'tap0', typevisor_net: 'user' }, /^give either host_dev_name .* not both/],
    ['a tap name longer than Linux allows', '/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: 'tap0123456789abc' }, /host_dev_name/],
    ['a bad MAC', '/network-interfaces/eth0', { iface_id: 'eth0', guest_mac: 'zz' }, /guest_mac/],
    ['a multicast MAC', '/network-interfaces/eth0', { iface_id: 'eth0', guest_mac: '01:00:5E:00:00:01' }, /^guest_mac: 01:00:5e:00:00:01 is a multicast address/],
    ['vsock', '/vsock', { guest_cid: 3, uds_path: '/tmp/v.sock' }, /vsock is not available/],
    ['an unknown action', '/actions', { action_type: 'Reboot' }, /action_type/],
  ])('refuses %s with 400 and a fault_message', async (_what, p, body, re) => {
    const s = new ApiServer();
    const r = await put(s, p, body);
    expect(r.status).toBe(400);
    expect(faultOf(r)).toMatch(re);
  });

  it('refuses a second root device and keeps the first', async () => {
    const s = new ApiServer();
    await put(s, '/drives/a', { drive_id: 'a', path_on_host: '/a', is_root_device: true });
    const r = await put(s, '/drives/b', { drive_id: 'b', path_on_host: '/b', is_root_device: true });
    expect(faultOf(r)).toMatch(/root block device already exists/);
    expect(((await s.handle('GET', '/vm/config', '')).body as { drives: unknown[] }).drives).toHaveLength(1);
  });

  it('refuses operations in the wrong state', async () => {
    const s = new ApiServer();
    expect(faultOf(await put(s, '/actions', { action_type: 'InstanceStart' }))).toMatch(/without kernel configuration/);
    expect(faultOf(await s.handle('PATCH', '/vm', JSON.stringify({ state: 'Paused' })))).toMatch(/not running/);
    expect(faultOf(await put(s, '/snapshot/create', { snapshot_path: '/s', mem_file_path: '/m' }))).toMatch(/not started/);
    expect(faultOf(await put(s, '/actions', { action_type: 'SendCtrlAltDel' }))).toMatch(/not running/);
  });

  it('refuses a missing, corrupt or mismatched snapshot in one line', async () => {
    const s = new ApiServer();
    const state = path.join(dir, 'state.json');
    const mem = path.join(dir, 'mem');
    expect(faultOf(await put(s, '/snapshot/load', { snapshot_path: state, mem_backend: { backend_type: 'File', backend_path: mem } }))).toMatch(/does not exist/);
    writeFileSync(state, 'not json');
    writeFileSync(mem, Buffer.alloc(4096));
    expect(faultOf(await put(s, '/snapshot/load', { snapshot_path: state, mem_file_path: mem }))).toMatch(/not a typevisor snapshot/);
    writeFileSync(state, JSON.stringify({ format: 'typevisor-snapshot', version: 99 }));
    expect(faultOf(await put(s, '/snapshot/load', { snapshot_path: state, mem_file_path: mem }))).toMatch(/version 99/);
    writeFileSync(state, JSON.stringify({ format: 'typevisor-snapshot', version: 1, memoryBytes: 8192, config: { memoryBytes: 8192 } }));
    expect(faultOf(await put(s, '/snapshot/load', { snapshot_path: state, mem_file_path: mem }))).toMatch(/holds 4096 bytes/);
    expect(faultOf(await put(s, '/snapshot/load', { snapshot_path: state, mem_backend: { backend_type: 'Uffd', backend_path: mem } }))).toMatch(/Uffd/);
    expect(s.state).toBe('Not started');
  });

  it('answers an unknown path or method with 400', async () => {
    const s = new ApiServer();
    expect(faultOf(await s.handle('GET', '/nope', ''))).toMatch(/Invalid request method and\/or path: GET \/nope/);
    expect(faultOf(await s.handle('DELETE', '/boot-source', ''))).toMatch(/Invalid request/);
  });

  it('serves an OpenAPI document with every endpoint and schema', async () => {
    const doc = (await new ApiServer().handle('GET', '/openapi.json', '')).body as { openapi: string; paths: Record<string, unknown>; components: { schemas: Record<string, { properties?: Record<string, unknown> }> } };
    expect(doc.openapi).toBe('3.1.0');
    for (const p of ['/boot-source', '/machine-config', '/drives/{drive_id}', '/actions', '/vm', '/snapshot/create', '/snapshot/load']) expect(doc.paths[p]).toBeDefined();
    expect(Object.keys(doc.components.schemas.BootSource!.properties!)).toEqual(['kernel_image_path', 'boot_args', 'initrd_path']);
    expect(JSON.parse(JSON.stringify(doc))).toEqual(doc);
  });

  it('speaks HTTP on a Unix socket, refuses a socket in use, and replaces a stale one', async () => {
    const sock = path.join(dir, 'api.sock');
    const s = new ApiServer();
    await s.listen(sock);
    expect(await apiRequest(sock, 'GET', '/')).toMatchObject({ status: 200, body: { state: 'Not started' } });
    const r = await apiRequest(sock, 'PUT', '/boot-source', { kernel_image_path: '/k', nope: true });
    expect(r.status).toBe(400);
    await expect(new ApiServer().listen(sock)).rejects.toThrow(/in use by another process/);
    // a body over the limit
    const big = await apiRequest(sock, 'PUT', '/boot-source', { kernel_image_path: 'x'.repeat(100_000) });
    expect(faultOf(big)).toMatch(/larger than/);
    await s.close();
    // a stale file where the socket should be (a crashed server's) is replaced
    const stale = path.join(dir, 'stale.sock');
    writeFileSync(stale, '');
    const s2 = new ApiServer();
    await s2.listen(stale);
    expect((await apiRequest(stale, 'GET', '/')).status).toBe(200);
    await s2.close();
  });
});

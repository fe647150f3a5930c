/** `--net` and `--publish` parsing (src/vmm/config.ts). */
import { describe, expect, it } from 'vitest';
import { ConfigError, parseNet, parsePublish, resolveNet } from './config.js';

describe('--net', () => {
  it('knows user, none and stream=PATH', () => {
    expect(parseNet('user')).toEqual({ mode: 'user', publish: [] });
    expect(parseNet('none')).toEqual({ mode: 'none' });
    expect(parseNet('stream=/tmp/p.sock')).toEqual({ mode: 'stream', path: '/tmp/p.sock' });
    expect(parseNet('tap=tap0')).toEqual({ mode: 'tap', name: 'tap0' });
    expect(() => parseNet('tap=a/b')).toThrow(/--net "tap=a\/b": "a\/b" is not a network interface name/);
    expect(() => parseNet('tap=sixteen-chars-xx')).toThrow(/is not a network interface name/);
    expect(() => parseNet('tap')).toThrow(/--net "tap" is not understood: give --net user/);
  });
});

describe('--publish', () => {
  it('parses [ADDR:]HOSTPORT:GUESTPORT[/udp], binding 127.0.0.1 by default', () => {
    expect(parsePublish('8080:80')).toEqual({ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 8080, guestPort: 80 });
    expect(parsePublish('0.0.0.0:8080:80/tcp')).toEqual({ protocol: 'tcp', hostAddress: '0.0.0.0', hostPort: 8080, guestPort: 80 });
    expect(parsePublish('5353:53/udp')).toEqual({ protocol: 'udp', hostAddress: '127.0.0.1', hostPort: 5353, guestPort: 53 });
    expect(parsePublish('[::1]:2222:22')).toEqual({ protocol: 'tcp', hostAddress: '::1', hostPort: 2222, guestPort: 22 });
    expect(parsePublish('localhost:2222:22').hostAddress).toBe('127.0.0.1');
  });

  it('refuses bad syntax and ports out of range, naming the forms', () => {
    for (const bad of ['80', '8080:80/sctp', 'a:b', '8080:', ':80', 'example.com:80:80', '1.2.3.4.5:80:80', '']) {
      expect(() => parsePublish(bad)).toThrow(ConfigError);
    }
    expect(() => parsePublish('0:80')).toThrow(/the host port 0 is not 1 to 65535/);
    expect(() => parsePublish('8080:65536')).toThrow(/the guest port 65536 is not 1 to 65535/);
    expect(() => parsePublish('999.1.1.1:80:80')).toThrow(/999\.1\.1\.1 is not an IP address/);
    expect(() => parsePublish('80')).toThrow(/give \[ADDR:\]HOSTPORT:GUESTPORT\[\/udp\]/);
  });

  it('implies the user network; refuses it with none or stream, and the same host port twice', () => {
    const p = parsePublish('8080:80');
    expect(resolveNet(undefined, [p])).toEqual({ mode: 'user', publish: [p] });
    expect(resolveNet({ mode: 'user', publish: [] }, [p])).toEqual({ mode: 'user', publish: [p] });
    expect(resolveNet(undefined, [])).toBeUndefined();
    expect(() => resolveNet({ mode: 'none' }, [p])).toThrow(/--publish needs typevisor's user network, not --net none/);
    expect(() => resolveNet({ mode: 'stream', path: '/s' }, [p])).toThrow(/not --net stream=\/s/);
    expect(() => resolveNet({ mode: 'tap', name: 'tap0' }, [p])).toThrow(/not --net tap=tap0/);
    expect(() => resolveNet(undefined, [p, parsePublish('8080:81')])).toThrow(/tcp port 8080 on 127\.0\.0\.1 twice/);
    expect(resolveNet(undefined, [p, parsePublish('8080:81/udp')])?.mode).toBe('user'); // TCP and UDP may share a number
  });
});

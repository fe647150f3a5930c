/** `--net` and `--publish` parsing (src/vmm/config.ts). */
import { describe, expect, it } from 'vitest';
import { ConfigError, macBytes, parseMac, parseNet, parsePublish, randomMac, resolveNet } from './config.js';

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

  it('takes ,mac= after every network kind, in lower case', () => {
    expect(parseNet('user,mac=52:54:00:AB:cd:01')).toEqual({ mode: 'user', publish: [], mac: '52:54:00:ab:cd:01' });
    expect(parseNet('tap=tap0,mac=02:00:00:00:00:01')).toEqual({ mode: 'tap', name: 'tap0', mac: '02:00:00:00:00:01' });
    expect(parseNet('stream=/tmp/p.sock,mac=52:54:00:00:00:07')).toEqual({ mode: 'stream', path: '/tmp/p.sock', mac: '52:54:00:00:00:07' });
    // a stream path may hold commas; only a trailing ,mac= is an option
    expect(parseNet('stream=/tmp/a,b.sock')).toEqual({ mode: 'stream', path: '/tmp/a,b.sock' });
    expect(parseNet('stream=/tmp/a,b.sock,mac=52:54:00:00:00:07')).toEqual({ mode: 'stream', path: '/tmp/a,b.sock', mac: '52:54:00:00:00:07' });
  });

  it('refuses a bad MAC, a MAC on none and unknown options, in one line that names the fix', () => {
    const cases: [string, RegExp][] = [
      ['user,mac=52:54:00:12:34', /"52:54:00:12:34" is not a MAC address: give six hex pairs separated by colons, e.g. mac=52:54:00:12:34:56/],
      ['user,mac=52-54-00-12-34-56', /is not a MAC address/],
      ['user,mac=52:54:00:12:34:5g', /is not a MAC address/],
      ['user,mac=', /"" is not a MAC address/],
      ['user,mac=52:54:00:12:34:56:78', /is not a MAC address/],
      ['tap=tap0,mac=01:00:5e:00:00:01', /01:00:5e:00:00:01 is a multicast address \(bit 0 of the first octet is set\).*make the first octet even/],
      ['stream=/s,mac=ff:ff:ff:ff:ff:ff', /ff:ff:ff:ff:ff:ff is a multicast address/],
      ['user,mac=00:00:00:00:00:00', /00:00:00:00:00:00 is not a usable address/],
      ['none,mac=52:54:00:12:34:56', /none gives no card to put a MAC address on: drop ,mac=/],
      ['user,speed=10', /the option "speed=10" is not known: the one option is ,mac=52:54:00:12:34:56/],
      ['tap=tap0,model=e1000', /the option "model=e1000" is not known/],
      ['user,mac=52:54:00:12:34:56,x=1', /--net "user,mac=52:54:00:12:34:56,x=1"/],
    ];
    for (const [text, message] of cases) {
      let error: unknown;
      try {
        parseNet(text);
      } catch (e) {
        error = e;
      }
      expect(error, text).toBeInstanceOf(ConfigError);
      expect((error as Error).message, text).toMatch(message);
      expect((error as Error).message, text).not.toContain('\n');
    }
  });

  it('keeps the MAC when --publish resolves the network', () => {
    const p = parsePublish('8080:80');
    expect(resolveNet(parseNet('user,mac=52:54:00:00:00:09'), [p])).toEqual({ mode: 'user', publish: [p], mac: '52:54:00:00:00:09' });
  });
});

describe('MAC addresses', () => {
  it('parseMac names what was wrong; macBytes gives the six bytes', () => {
    expect(parseMac('0A:1b:2C:3d:4E:5f')).toBe('0a:1b:2c:3d:4e:5f');
    expect(() => parseMac('03:00:00:00:00:01', 'guest_mac')).toThrow(/^guest_mac: 03:00:00:00:00:01 is a multicast address/);
    expect(Array.from(macBytes('52:54:00:ab:cd:ef'))).toEqual([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
  });

  it('randomMac is 52:54:00 and three bytes from the source, a valid unicast address', () => {
    expect(randomMac((b) => b.set([0xde, 0xad, 0x01]))).toBe('52:54:00:de:ad:01');
    const seen = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const mac = randomMac((b) => b.forEach((_, j) => (b[j] = Math.floor(Math.random() * 256))));
      expect(parseMac(mac)).toBe(mac);
      expect(mac.startsWith('52:54:00:')).toBe(true);
      seen.add(mac);
    }
    expect(seen.size).toBeGreaterThan(40);
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

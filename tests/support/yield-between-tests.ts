/**
 * A vitest setup file: before every test, let the worker's event loop turn once.
 *
 * A vitest worker reports to the runner over an RPC with a fixed 60 s timeout, and reads the
 * runner's replies only when its event loop polls. Awaiting between tests runs microtasks only,
 * so a file of synchronous tests (the CPU oracle suites: 175 SSE tests take 110 s on a slow
 * 2-core host) never polls; once the replies wait past 60 s the timeout fires first, and the
 * run fails with "Timeout calling onTaskUpdate" though every test passed. One setImmediate per
 * test reaches the poll phase, where the replies are read.
 */
import { beforeEach } from 'vitest';

beforeEach(() => new Promise<void>((resolve) => setImmediate(resolve)));

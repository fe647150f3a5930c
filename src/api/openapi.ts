/**
 * The OpenAPI 3.1 document of the API (`GET /openapi.json`), generated from the same zod
 * schemas that validate the requests, so the two cannot disagree.
 */
import { z } from 'zod';
import * as S from './schema.js';

const ERROR = { description: 'The request was refused', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
const OK = { description: 'Done' };

function op(summary: string, body?: string): Record<string, unknown> {
  return {
    summary,
    ...(body ? { requestBody: { required: true, content: { 'application/json': { schema: { $ref: `#/components/schemas/${body}` } } } } } : {}),
    responses: { 204: OK, 400: ERROR },
  };
}

const get = (summary: string): Record<string, unknown> => ({ summary, responses: { 200: { description: 'OK' }, 400: ERROR } });

let cached: unknown;

export function openApiDocument(): unknown {
  if (cached) return cached;
  const schemas: Record<string, unknown> = {
    Error: { type: 'object', required: ['fault_message'], properties: { fault_message: { type: 'string' } } },
  };
  for (const [name, schema] of Object.entries(S.SCHEMAS)) schemas[name] = z.toJSONSchema(schema, { target: 'openapi-3.0', unrepresentable: 'any' });
  cached = {
    openapi: '3.1.0',
    info: { title: 'typevisor API (Firecracker-compatible)', version: '0.1.0', description: 'Firecracker\'s endpoints and fields; typevisor_* fields are typevisor\'s own.' },
    paths: {
      '/': { get: get('Instance information') },
      '/version': { get: get('The VMM version') },
      '/boot-source': { put: op('Kernel, initrd and command line (before start)', 'BootSource') },
      '/machine-config': { get: get('Machine configuration'), put: op('vCPUs and memory (before start)', 'MachineConfig'), patch: op('Change part of the machine configuration (before start)', 'MachineConfig') },
      '/drives/{drive_id}': { put: op('Add or replace a block device (before start)', 'Drive') },
      '/network-interfaces/{iface_id}': { put: op('Add a network interface (before start)', 'NetworkInterface') },
      '/vsock': { put: op('vsock (not available yet: always 400)', 'Vsock') },
      '/entropy': { put: op('The entropy device (typevisor always has one)', 'Entropy') },
      '/logger': { put: op('Logger configuration (accepted)', 'Logger') },
      '/metrics': { put: op('Metrics configuration (accepted)', 'Metrics') },
      '/actions': { put: op('InstanceStart, SendCtrlAltDel (the ACPI power button), FlushMetrics', 'InstanceActionInfo') },
      '/vm': { patch: op('Pause or resume the VM', 'Vm') },
      '/vm/config': { get: get('The whole configuration') },
      '/snapshot/create': { put: op('Write a snapshot of the paused VM', 'SnapshotCreateParams') },
      '/snapshot/load': { put: op('Restore a snapshot (before start)', 'SnapshotLoadParams') },
      '/openapi.json': { get: get('This document') },
    },
    components: { schemas },
  };
  return cached;
}

/**
 * A small client for the API socket (`typevisor snapshot`, tests): one request, the status and
 * the parsed body; a 4xx/5xx becomes an error carrying the server's fault_message.
 */
import http from 'node:http';

export class ApiClientError extends Error {
  override name = 'ApiClientError';
}

export function apiRequest(socketPath: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? '' : JSON.stringify(body);
    const req = http.request({ socketPath, method, path, headers: text ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const parsed: unknown = raw ? JSON.parse(raw) : undefined;
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.on('error', (e: NodeJS.ErrnoException) => {
      const why = e.code === 'ENOENT' ? 'no such socket' : e.code === 'ECONNREFUSED' ? 'nothing is listening on it' : e.message;
      reject(new ApiClientError(`cannot reach the API socket ${socketPath} (${why}): start the VM with typevisor serve --api-sock ${socketPath}`));
    });
    req.end(text);
  });
}

/** A request that must succeed (2xx): its body; otherwise the server's fault_message as an error. */
export async function apiCall(socketPath: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const r = await apiRequest(socketPath, method, path, body);
  if (r.status >= 300) {
    const msg = (r.body as { fault_message?: string } | undefined)?.fault_message ?? `status ${r.status}`;
    throw new ApiClientError(`${method} ${path}: ${msg}`);
  }
  return r.body;
}

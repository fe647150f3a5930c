/**
 * The channels over which a VM's vCPU threads hand each other compiled block modules
 * (cpu/wasm/share.ts): a MessageChannel between every two threads, read synchronously
 * (receiveMessageOnPort) when a vCPU looks for a block. The ports are never started (no
 * listener), so messages wait in them until read: a thread that runs its event loop (the main
 * thread does, between slices) would otherwise have them dispatched there, to no one. (A
 * BroadcastChannel loses them that way.)
 */
import { MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type { ModuleChannel, ShareMessage } from '../../cpu/wasm/share.js';

export interface TranslationChannel extends ModuleChannel {
  close(): void;
}

/** Channels between n threads: thread i's ports, one per other thread (transfer them to it). */
export function translationMesh(n: number): MessagePort[][] {
  const ports: MessagePort[][] = Array.from({ length: n }, () => []);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const { port1, port2 } = new MessageChannel();
      ports[i]!.push(port1);
      ports[j]!.push(port2);
    }
  }
  return ports;
}

/** A thread's end of the mesh: post to every other thread, receive from any. */
export function openTranslationChannel(ports: readonly MessagePort[]): TranslationChannel {
  for (const p of ports) p.unref();
  let next = 0;
  return {
    post: (msg: ShareMessage) => {
      for (const p of ports) p.postMessage(msg);
    },
    receive: () => {
      // each port delivers its sender's messages in order (what 'restart' needs); across
      // senders, take turns
      for (let k = 0; k < ports.length; k++) {
        const i = (next + k) % ports.length;
        const r = receiveMessageOnPort(ports[i]!);
        if (r !== undefined) {
          next = (i + 1) % ports.length;
          return r.message as ShareMessage;
        }
      }
      return undefined;
    },
    close: () => {
      for (const p of ports) p.close();
    },
  };
}

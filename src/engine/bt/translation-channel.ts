/**
 * The channel over which a VM's vCPU threads hand each other compiled block modules
 * (cpu/wasm/share.ts): a BroadcastChannel per VM, read synchronously (receiveMessageOnPort)
 * when the vCPU looks for a block, so a thread busy in guest code never needs its event loop.
 */
import { BroadcastChannel, receiveMessageOnPort } from 'node:worker_threads';
import type { ModuleChannel, ShareMessage } from '../../cpu/wasm/share.js';

let made = 0;

/** A name no other VM of this process (or any other) uses. */
export function translationChannelName(): string {
  return `typevisor-bt-translations-${process.pid}-${++made}-${Math.random().toString(36).slice(2)}`;
}

export interface TranslationChannel extends ModuleChannel {
  close(): void;
}

export function openTranslationChannel(name: string): TranslationChannel {
  const bc = new BroadcastChannel(name);
  // messages wait in the channel until receive takes them: no listener, nothing keeps the loop alive
  (bc as unknown as { unref?: () => void }).unref?.();
  return {
    post: (msg: ShareMessage) => bc.postMessage(msg),
    receive: () => receiveMessageOnPort(bc as never)?.message as ShareMessage | undefined,
    close: () => bc.close(),
  };
}

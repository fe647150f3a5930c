/**
 * What every virtio device model implements, whatever the transport (virtio 1.2, ch. 2 and 5),
 * and what a transport offers it. A device sees its queues and guest memory through
 * `VirtioTransport`; it never sees PCI, buses or the machine.
 */
import type { GuestMemory } from '../../machine/memory.js';
import type { SplitQueue, VirtqueueError } from './queue/queue.js';

// Device status (2.1)
export const STATUS_ACKNOWLEDGE = 1;
export const STATUS_DRIVER = 2;
export const STATUS_DRIVER_OK = 4;
export const STATUS_FEATURES_OK = 8;
export const STATUS_DEVICE_NEEDS_RESET = 0x40;
export const STATUS_FAILED = 0x80;

// Reserved feature bits (6)
export const VIRTIO_F_INDIRECT_DESC = 28n;
export const VIRTIO_F_EVENT_IDX = 29n;
export const VIRTIO_F_VERSION_1 = 32n;
export const VIRTIO_F_ACCESS_PLATFORM = 33n;
export const VIRTIO_F_RING_PACKED = 34n;

export const bit = (n: bigint): bigint => 1n << n;

/** Features every device gets from the transport (no ACCESS_PLATFORM, no RING_PACKED). */
export const TRANSPORT_FEATURES = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX);

// Device types (5)
export const VIRTIO_ID_NET = 1;
export const VIRTIO_ID_BLOCK = 2;
export const VIRTIO_ID_CONSOLE = 3;
export const VIRTIO_ID_RNG = 4;

/** What a device can ask of the transport it is plugged into. */
export interface VirtioTransport {
  readonly memory: GuestMemory;
  /** Queue `index` (configured by the driver; check `ready`). */
  queue(index: number): SplitQueue;
  /** Features the driver accepted. */
  readonly negotiated: bigint;
  /** After pushing used entries to queue `index`: interrupt the driver if it wants one. */
  usedBuffers(index: number): void;
  /** The driver broke a queue: mark the device DEVICE_NEEDS_RESET and stop serving it. */
  fail(error: VirtqueueError): void;
  /** The device configuration space changed (config-change interrupt). */
  configChanged(): void;
}

export interface VirtioDevice {
  /** Device type (5): 4 for an entropy device, ... */
  readonly deviceType: number;
  /** PCI class code (base class << 16 | subclass << 8 | prog-if). */
  readonly pciClass: number;
  /** Maximum size of each queue (powers of two); the length is the number of queues. */
  readonly queueSizes: readonly number[];
  /** Device-specific feature bits (the transport adds TRANSPORT_FEATURES). */
  readonly features: bigint;
  /** Bytes of device-specific configuration (0: none). */
  readonly configSize: number;
  /** Called once by the transport it is plugged into. */
  attach(transport: VirtioTransport): void;
  readConfig(offset: number, size: 1 | 2 | 4): number;
  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void;
  /** The driver set DRIVER_OK: the negotiated features are final, ready queues may be served. */
  activate(): void;
  /** The driver notified queue `index` (available buffers). */
  notify(index: number): void;
  /** The driver reset the device (status 0): forget all state. */
  reset(): void;
  /** One line of device state for a state dump (optional). */
  describe?(): string;
}

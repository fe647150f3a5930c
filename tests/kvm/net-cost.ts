/**
 * What a frame's round trip through the kvm engine's network relay costs, measured with the
 * small virtio-net guest (net-guest.ts) on the machine `typevisor run --engine kvm` builds, and
 * src/net/user as the back end. Not a test:
 *
 *   node --import tsx tests/kvm/net-cost.ts [rounds]
 *
 * The guest sends an ARP request for 10.0.2.2, waits (HLT) for the answer's interrupt, and does
 * it again `rounds` times: doorbell exit, the device thread's microtask flush posts the frame,
 * the main thread's user network answers, the relay posts the answer and kicks the device thread
 * out of KVM_RUN, the card writes it and sends KVM_SIGNAL_MSI. Printed per round (after 10 of
 * warm-up, from the main thread's clock when each request arrived): the whole round trip, and the
 * part spent on the main thread (request in → answer handed to the relay). Five runs.
 */
import { NetRelayHost } from '../../src/net/relay.js';
import { UserNetBackend } from '../../src/net/user/stack.js';
import { kvmSkipReason, PRODUCT_MACHINE_MODULE, runGuest } from './harness.js';
import { NET_GUEST_OK, virtioNetGuest } from './net-guest.js';

const skip = kvmSkipReason();
if (skip) {
  console.log(`cannot measure: ${skip}`);
  process.exit(0);
}
const rounds = Number(process.argv[2] ?? 500);
const mac = [0x52, 0x54, 0x00, 0x01, 0x02, 0x03];
const WARMUP = 10;

for (let run = 0; run < 5; run++) {
  const backend = new UserNetBackend({});
  await backend.connect();
  let relay: NetRelayHost | undefined;
  const requests: number[] = [];
  const answers: number[] = [];
  const r = await runGuest(virtioNetGuest({ mac, rounds: rounds + WARMUP }), {
    machine: PRODUCT_MACHINE_MODULE,
    machineConfig: { net: { mac, rxChecksumsValid: true } },
    timeoutMs: 120_000,
    onStart: (engine) => {
      const rl = new NetRelayHost((m, t) => engine.post(m, t), (f) => (requests.push(performance.now()), backend.transmit(f)));
      relay = rl;
      backend.attach({ receive: (f) => (answers.push(performance.now()), rl.receive(f)), onRxSpace: (l) => rl.onRxSpace(l) });
    },
    onMessage: (m) => relay?.handle(m) ?? false,
  });
  backend.close();
  if (r.reason.kind !== 'debug-exit' || r.reason.value !== NET_GUEST_OK) throw new Error(`the guest failed: ${JSON.stringify(r.reason)}`);
  const n = requests.length - 1 - WARMUP;
  const perRound = ((requests[requests.length - 1]! - requests[WARMUP]!) * 1000) / n;
  let main = 0;
  for (let i = WARMUP; i < requests.length; i++) main += answers[i]! - requests[i]!;
  main = (main * 1000) / (requests.length - WARMUP);
  console.log(`${n} ARP round trips: ${perRound.toFixed(1)} µs each (wall), of which ${main.toFixed(1)} µs on the main thread`);
}

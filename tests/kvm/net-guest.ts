/**
 * A small 32-bit guest that drives a virtio-net PCI function by hand, for the KVM engine tests
 * (on a kvm_pvm host KVM emulates every instruction, so it stays short). Its setup is the one of
 * blk-guest.ts (configuration mechanism #1, capabilities, MSI-X, handlers that do not IRET).
 * It:
 *
 *  1. finds 1af4:1041 (virtio-net, modern), keeps the BAR where the builder placed it;
 *  2. negotiates VERSION_1 and VIRTIO_NET_F_MAC (no MRG_RXBUF: a frame fills one buffer; the
 *     header is 12 bytes with VERSION_1 all the same);
 *  3. sets up receiveq (0, MSI-X entry 0 → NET_MSI_VECTOR) and transmitq (1, no interrupt);
 *  4. reads the MAC from the device configuration and compares it with the one the test gave;
 *  5. sends an ARP request "who has 10.0.2.2, tell 10.0.2.15" from that MAC and checks that the
 *     transmit buffer came back used;
 *  6. posts one 2 KiB receive buffer — with `waitGo`, only after the host sets byte NET_GO_FLAG
 *     in RAM, so the answer has to wait (in the relay) for the guest to refill — and halts until
 *     the receive interrupt;
 *  7. checks the frame: to its MAC, ARP, a reply, from 10.0.2.2, to 10.0.2.15;
 *  then `rounds - 1` more round trips (5 to 7 with the same buffers: what a latency measurement
 *  times).
 *
 * Boots at 0000:7c00 in real mode (runGuest) or as a multiboot kernel (`multiboot`: the CLI).
 * Exit: 'S' on COM1, then debug-exit NET_GUEST_OK, or one of NET_FAIL.
 */

export const NET_GUEST_OK = 0x31;
export const NET_MSI_VECTOR = 0x41;
/** The byte the host sets to let a `waitGo` guest post its receive buffer. */
export const NET_GO_FLAG = 0x600;

/** Failure codes (debug-exit values). */
export const NET_FAIL = {
  notFound: 0x41,
  barHigh: 0x42,
  capsMissing: 0x43,
  noVersion1: 0x44,
  featuresRejected: 0x45,
  vectorRefused: 0x46,
  noMac: 0x47,
  macMismatch: 0x48,
  txNotUsed: 0x49,
  rxUsedIdx: 0x4a,
  rxUsedLen: 0x4b,
  notToUs: 0x4c,
  notArpReply: 0x4d,
  wrongSender: 0x4e,
  wrongTarget: 0x4f,
} as const;

export interface NetGuestOptions {
  /** The MAC the card must have. */
  mac: readonly number[];
  /** Post the receive buffer only once the host sets NET_GO_FLAG. */
  waitGo?: boolean;
  /** A multiboot (v1) kernel loaded at 1 MiB, instead of a boot sector at 0x7c00. */
  multiboot?: boolean;
  /** ARP round trips in all (default 1; the go flag is waited for in the first only). */
  rounds?: number;
}

export function virtioNetGuest(opts: NetGuestOptions): string {
  const f = (n: number): string => `0x${n.toString(16)}`;
  if (opts.mac.length !== 6) throw new RangeError('a MAC has 6 bytes');
  const entry = opts.multiboot
    ? `
bits 32
org 0x100000
MB_MAGIC equ 0x1BADB002
MB_FLAGS equ (1 << 1) | (1 << 16)
mb_header:
  dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
  dd mb_header, mb_header, image_end, image_end, mb_start
mb_start:
  cli
  lgdt [gdtr]
  jmp 0x08:pm32
`
    : `
bits 16
org 0x7c00
  cli
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7000
  lgdt [gdtr]
  mov eax, cr0
  or eax, 1
  mov cr0, eax
  jmp 0x08:pm32
`;
  return `
%define WAIT_GO ${opts.waitGo ? 1 : 0}
%define ROUNDS ${opts.rounds ?? 1}
%define GO_FLAG ${f(NET_GO_FLAG)}
%define RXDESC 0x10000
%define RXAVAIL 0x11000
%define RXUSED 0x12000
%define TXDESC 0x13000
%define TXAVAIL 0x14000
%define TXUSED 0x15000
%define TXBUF 0x16000
%define RXBUF 0x17000
%define QSIZE 8
%define LAPIC 0xfee00000
${entry}
bits 32
pm32:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov esp, 0x7000
  mov al, 0xff                  ; the in-kernel 8259s stay masked
  out 0x21, al
  out 0xa1, al
  mov byte [GO_FLAG], 0
  mov eax, h_msi
  mov edi, idt + ${f(NET_MSI_VECTOR)} * 8
  call set_gate
  lidt [idtr]
  mov dword [LAPIC + 0xf0], 0x1ff ; SVR: APIC software-enabled

  ; 1. find 1af4:1041 (virtio-net, modern) on bus 0
  mov ebp, 0x80000000
find:
  mov eax, ebp
  call cfg_read
  cmp eax, 0x10411af4
  je found
  add ebp, 1 << 11
  cmp ebp, 0x80000000 + (32 << 11)
  jne find
  mov al, ${f(NET_FAIL.notFound)}
  jmp exit
found:
  lea eax, [ebp + 0x14]
  call cfg_read
  test eax, eax
  mov al, ${f(NET_FAIL.barHigh)}
  jnz exit
  lea eax, [ebp + 0x10]
  call cfg_read
  and eax, 0xfffffff0
  mov [v_bar], eax
  lea eax, [ebp + 0x04]
  mov ebx, 0x6                  ; memory decoding, bus master
  call cfg_write

  ; capabilities: common (1), notify (2), device (4), MSI-X
  lea eax, [ebp + 0x34]
  call cfg_read
  movzx esi, al
caps:
  test esi, esi
  jz caps_done
  lea eax, [ebp + esi]
  call cfg_read
  movzx edi, ah                 ; next
  cmp al, 0x11
  je cap_msix
  cmp al, 0x09
  jne cap_next
  shr eax, 24                   ; cfg_type
  mov ecx, eax
  lea eax, [ebp + esi + 8]
  call cfg_read                 ; offset in the BAR
  add eax, [v_bar]
  cmp ecx, 1
  jne .not_common
  mov [v_common], eax
.not_common:
  cmp ecx, 4
  jne .not_device
  mov [v_device], eax
.not_device:
  cmp ecx, 2
  jne cap_next
  mov [v_notify], eax
  lea eax, [ebp + esi + 16]
  call cfg_read
  mov [v_mult], eax
  jmp cap_next
cap_msix:
  mov [v_msixcap], esi
  lea eax, [ebp + esi + 4]
  call cfg_read
  and eax, ~7                   ; BIR 0: our BAR
  add eax, [v_bar]
  mov [v_msixtab], eax
cap_next:
  mov esi, edi
  jmp caps
caps_done:
  cmp dword [v_common], 0
  je caps_missing
  cmp dword [v_notify], 0
  je caps_missing
  cmp dword [v_device], 0
  je caps_missing
  cmp dword [v_msixtab], 0
  jne caps_ok
caps_missing:
  mov al, ${f(NET_FAIL.capsMissing)}
  jmp exit
caps_ok:
  mov ebx, [v_common]

  ; 2. reset, ACKNOWLEDGE | DRIVER; features VERSION_1 (bit 32) and NET_F_MAC (bit 5)
  mov byte [ebx + 0x14], 0
  mov byte [ebx + 0x14], 3
  mov dword [ebx + 0x00], 1     ; device_feature_select = 1
  test dword [ebx + 0x04], 1
  mov al, ${f(NET_FAIL.noVersion1)}
  jz exit
  mov dword [ebx + 0x00], 0
  test dword [ebx + 0x04], 1 << 5
  mov al, ${f(NET_FAIL.noMac)}
  jz exit
  mov dword [ebx + 0x08], 1     ; driver_feature_select = 1
  mov dword [ebx + 0x0c], 1
  mov dword [ebx + 0x08], 0
  mov dword [ebx + 0x0c], 1 << 5
  mov byte [ebx + 0x14], 0xb    ; | FEATURES_OK
  test byte [ebx + 0x14], 8
  mov al, ${f(NET_FAIL.featuresRejected)}
  jz exit

  ; MSI-X: table entry 0 -> APIC 0, vector NET_MSI_VECTOR; enable
  mov edx, [v_msixtab]
  mov dword [edx + 0], LAPIC
  mov dword [edx + 4], 0
  mov dword [edx + 8], ${f(NET_MSI_VECTOR)}
  mov dword [edx + 12], 0
  mov eax, [v_msixcap]
  add eax, ebp
  push eax
  call cfg_read
  mov ebx, eax
  or ebx, 0x80000000            ; Message Control bit 15: MSI-X enable
  pop eax
  call cfg_write
  mov ebx, [v_common]

  ; 3. receiveq (0): 8 entries, MSI-X entry 0
  mov word [ebx + 0x16], 0
  mov word [ebx + 0x18], QSIZE
  mov word [ebx + 0x1a], 0
  cmp word [ebx + 0x1a], 0
  mov al, ${f(NET_FAIL.vectorRefused)}
  jne exit
  mov dword [ebx + 0x20], RXDESC
  mov dword [ebx + 0x24], 0
  mov dword [ebx + 0x28], RXAVAIL
  mov dword [ebx + 0x2c], 0
  mov dword [ebx + 0x30], RXUSED
  mov dword [ebx + 0x34], 0
  mov word [ebx + 0x1c], 1
  movzx eax, word [ebx + 0x1e]  ; queue_notify_off
  imul eax, [v_mult]
  add eax, [v_notify]
  mov [v_rxnotify], eax
  ; transmitq (1): 8 entries, no interrupt
  mov word [ebx + 0x16], 1
  mov word [ebx + 0x18], QSIZE
  mov word [ebx + 0x1a], 0xffff
  mov dword [ebx + 0x20], TXDESC
  mov dword [ebx + 0x24], 0
  mov dword [ebx + 0x28], TXAVAIL
  mov dword [ebx + 0x2c], 0
  mov dword [ebx + 0x30], TXUSED
  mov dword [ebx + 0x34], 0
  mov word [ebx + 0x1c], 1
  movzx eax, word [ebx + 0x1e]
  imul eax, [v_mult]
  add eax, [v_notify]
  mov [v_txnotify], eax
  mov word [RXAVAIL], 0         ; flags: interrupts wanted
  mov word [TXAVAIL], 1         ; VIRTQ_AVAIL_F_NO_INTERRUPT
  mov byte [ebx + 0x14], 0xf    ; | DRIVER_OK

  ; 4. the MAC in the device configuration, byte by byte, against the expected one
  mov esi, [v_device]
  xor ecx, ecx
.mac:
  mov al, [esi + ecx]
  mov [v_mac + ecx], al
  cmp al, [want_mac + ecx]
  mov al, ${f(NET_FAIL.macMismatch)}
  jne exit
  inc ecx
  cmp ecx, 6
  jne .mac

  ; 5. the ARP request: 12-byte header (zeros), then the 42-byte frame, in one buffer
  mov edi, TXBUF
  xor eax, eax
  mov ecx, 3
  rep stosd                     ; the virtio-net header
  mov dword [edi], 0xffffffff   ; destination: broadcast
  mov word [edi + 4], 0xffff
  mov eax, [v_mac]
  mov [edi + 6], eax            ; source: our MAC
  mov ax, [v_mac + 4]
  mov [edi + 10], ax
  mov word [edi + 12], 0x0608   ; EtherType ARP (big-endian 0x0806)
  mov dword [edi + 14], 0x00080100 ; htype 1, ptype 0x0800
  mov dword [edi + 18], 0x01000406 ; hlen 6, plen 4, op 1 (request)
  mov eax, [v_mac]
  mov [edi + 22], eax           ; sender MAC
  mov ax, [v_mac + 4]
  mov [edi + 26], ax
  mov dword [edi + 28], 0x0f02000a ; sender IP 10.0.2.15
  mov dword [edi + 32], 0       ; target MAC: unknown
  mov word [edi + 36], 0
  mov dword [edi + 38], 0x0202000a ; target IP 10.0.2.2
  mov dword [TXDESC + 0], TXBUF
  mov dword [TXDESC + 4], 0
  mov dword [TXDESC + 8], 12 + 42
  mov dword [TXDESC + 12], 0    ; flags 0 (device-readable), next 0
  mov dword [RXDESC + 0], RXBUF
  mov dword [RXDESC + 4], 0
  mov dword [RXDESC + 8], 2048
  mov dword [RXDESC + 12], 2    ; VIRTQ_DESC_F_WRITE, next 0

round:                          ; v_round: rounds done
  mov eax, [v_round]
  and eax, QSIZE - 1
  mov word [TXAVAIL + 4 + eax * 2], 0
  mov eax, [v_round]
  inc eax
  mov [TXAVAIL + 2], ax
  mov edx, [v_txnotify]
  mov word [edx], 1             ; the doorbell: queue 1
  mov eax, [v_round]
  inc eax
  cmp word [TXUSED + 2], ax     ; the device sent it during the doorbell's exit
  mov al, ${f(NET_FAIL.txNotUsed)}
  jne exit

%if WAIT_GO
  ; the answer is on its way but there is no receive buffer: wait for the host's go
  cmp dword [v_round], 0
  jne .posted
.go:
  pause
  cmp byte [GO_FLAG], 0
  je .go
.posted:
%endif

  ; 6. the 2 KiB receive buffer (descriptor 0), then wait for its interrupt
  mov eax, [v_round]
  and eax, QSIZE - 1
  mov word [RXAVAIL + 4 + eax * 2], 0
  mov byte [v_flag], 0
  mov eax, [v_round]
  inc eax
  mov [RXAVAIL + 2], ax
  mov edx, [v_rxnotify]
  mov word [edx], 0             ; the doorbell: queue 0
rx_wait:
  cli
  cmp byte [v_flag], 0
  jne got
  sti
  hlt
  jmp rx_wait
got:
  ; 7. the frame: used idx advanced, id 0, a header and at least an ARP packet
  mov eax, [v_round]
  inc eax
  cmp word [RXUSED + 2], ax
  mov al, ${f(NET_FAIL.rxUsedIdx)}
  jne exit
  mov ebx, [v_round]
  and ebx, QSIZE - 1
  cmp dword [RXUSED + 4 + ebx * 8], 0
  jne exit
  cmp dword [RXUSED + 8 + ebx * 8], 12 + 42
  mov al, ${f(NET_FAIL.rxUsedLen)}
  jb exit
  mov esi, RXBUF + 12
  mov eax, [esi]
  cmp eax, [v_mac]
  mov al, ${f(NET_FAIL.notToUs)}
  jne exit
  mov ax, [esi + 4]
  cmp ax, [v_mac + 4]
  mov al, ${f(NET_FAIL.notToUs)}
  jne exit
  cmp word [esi + 12], 0x0608
  mov al, ${f(NET_FAIL.notArpReply)}
  jne exit
  cmp word [esi + 20], 0x0200   ; op 2 (reply)
  jne exit
  cmp dword [esi + 28], 0x0202000a ; sender IP 10.0.2.2
  mov al, ${f(NET_FAIL.wrongSender)}
  jne exit
  cmp dword [esi + 38], 0x0f02000a ; target IP 10.0.2.15
  mov al, ${f(NET_FAIL.wrongTarget)}
  jne exit
  mov eax, [esi + 32]           ; target MAC: ours
  cmp eax, [v_mac]
  jne exit
  inc dword [v_round]
  cmp dword [v_round], ROUNDS
  jne round

  mov dx, 0x3f8
  mov al, 'S'
  out dx, al
  mov al, ${f(NET_GUEST_OK)}
exit:
  out 0xf4, al
  cli
  hlt

; The handler does not IRET (KVM's emulator on a kvm_pvm host emulates IRET in real mode only):
; it drops its frame and goes back to the wait loop's head, interrupts off as the gate left them.
h_msi:
  mov byte [v_flag], 1
  mov dword [LAPIC + 0xb0], 0   ; EOI
  add esp, 12
  jmp rx_wait

; eax: handler, edi: gate
set_gate:
  mov [edi], ax
  mov word [edi + 2], 0x08
  mov word [edi + 4], 0x8e00    ; present, DPL 0, 32-bit interrupt gate
  shr eax, 16
  mov [edi + 6], ax
  ret

; eax: config address -> eax: dword
cfg_read:
  push edx
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  in eax, dx
  pop edx
  ret
; eax: config address, ebx: dword
cfg_write:
  push edx
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  mov eax, ebx
  out dx, eax
  pop edx
  ret

align 4
v_bar: dd 0
v_common: dd 0
v_notify: dd 0
v_device: dd 0
v_mult: dd 0
v_msixcap: dd 0
v_msixtab: dd 0
v_rxnotify: dd 0
v_txnotify: dd 0
v_mac: times 8 db 0
v_round: dd 0
v_flag: db 0
want_mac: db ${opts.mac.map((b) => f(b)).join(', ')}
align 8
gdt:
  dq 0
  dq 0x00cf9a000000ffff         ; 0x08: 32-bit code, flat
  dq 0x00cf92000000ffff         ; 0x10: data, flat
gdt_end:
gdtr:
  dw gdt_end - gdt - 1
  dd gdt
idtr:
  dw 256 * 8 - 1
  dd idt
align 8
idt:
  times 256 dq 0
image_end:
`;
}

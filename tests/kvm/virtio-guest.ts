/**
 * A small 32-bit guest that drives the virtio-rng PCI function by hand, as a driver would, for
 * the KVM engine tests (on a kvm_pvm host KVM emulates every instruction, so it stays short):
 *
 *  1. finds 1af4:1044 on bus 0 through configuration mechanism #1 (ports 0xcf8/0xcfc);
 *  2. programs BAR0 (64-bit) at VIRTIO_GUEST_BAR and turns on memory decoding and bus mastering
 *     (and leaves INTx enabled);
 *  3. walks the capability list: the virtio vendor capabilities (id 0x09) give the common
 *     configuration, notify (and its multiplier) and ISR offsets; the MSI-X capability (0x11)
 *     its table offset;
 *  4. resets the device, negotiates VERSION_1 only, sets up queue 0 with 8 entries (descriptor
 *     table, avail ring, used ring in its RAM), sets DRIVER_OK;
 *  5. with MSI-X: programs table entry 0 (0xfee00000, vector MSI_VECTOR), enables MSI-X and
 *     gives queue 0 vector 0; with INTx: programs the IOAPIC redirection entry of the GSI the
 *     function's Interrupt Line register names (level, active high, vector INTX_VECTOR, APIC 0);
 *  6. posts one 16-byte device-writable buffer, notifies, halts until the interrupt handler
 *     (which, for INTx, reads the ISR to deassert the line) has run and sent the LAPIC EOI;
 *  7. checks the used ring (idx 1, id 0, len 16) and that the 16 bytes are not all zero.
 *
 * Then `rounds - 1` more round trips (post, notify, wait for the interrupt): what the notify
 * cost measurement times (it sees the 'S' on COM1 before them). Exit: debug-exit 0x31 on
 * success, 0x40 + n for the n-th check that failed (see FAIL_* below).
 */

/** Where the guest puts the function's BAR (not where the builder placed it). */
export const VIRTIO_GUEST_BAR = 0xc010_0000;
export const MSI_VECTOR = 0x41;
export const INTX_VECTOR = 0x42;
export const VIRTIO_GUEST_OK = 0x31;
/** Failure codes (debug-exit values). */
export const FAIL = {
  notFound: 0x41,
  barReadback: 0x42,
  capsMissing: 0x43,
  noVersion1: 0x44,
  featuresRejected: 0x45,
  vectorRefused: 0x46,
  wrongInterrupt: 0x47,
  usedIdx: 0x48,
  usedId: 0x49,
  usedLen: 0x4a,
  allZero: 0x4b,
  isrValue: 0x4c,
} as const;

export interface VirtioGuestOptions {
  /** Use INTx through the IOAPIC instead of MSI-X. */
  intx: boolean;
  /** Rounds in all, the checked first one included (default 1). */
  rounds?: number;
  /**
   * What each round after the first does (notify-cost.ts measures them):
   *  - 'roundtrip' (default): post the buffer, notify, wait for the device's interrupt;
   *  - 'notify-only': just the doorbell write (nothing new in the ring: an exit and no work);
   *  - 'host-msi': wait until the host sets byte GO_FLAG in RAM, then per round clear the flag,
   *    write the doorbell and wait for MSI_VECTOR, which the host sends itself (an ioeventfd
   *    consumer, for instance).
   */
  work?: 'roundtrip' | 'notify-only' | 'host-msi';
}

/** The byte the host sets to start the 'host-msi' rounds. */
export const GO_FLAG = 0x600;

export function virtioRngGuest(opts: VirtioGuestOptions): string {
  const f = (n: number): string => `0x${n.toString(16)}`;
  return `
%define INTX ${opts.intx ? 1 : 0}
%define ROUNDS ${opts.rounds ?? 1}
%define WORK ${['roundtrip', 'notify-only', 'host-msi'].indexOf(opts.work ?? 'roundtrip')}
%define GO_FLAG ${f(GO_FLAG)}
%define BAR ${f(VIRTIO_GUEST_BAR)}
%define DESC 0x10000
%define AVAIL 0x11000
%define USED 0x12000
%define BUF 0x13000
%define QSIZE 8
%define LAPIC 0xfee00000
%define IOAPIC 0xfec00000

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
  ; IDT: gates for the two vectors
  mov eax, h_msi
  mov edi, idt + ${f(MSI_VECTOR)} * 8
  call set_gate
  mov eax, h_intx
  mov edi, idt + ${f(INTX_VECTOR)} * 8
  call set_gate
  lidt [idtr]
  mov dword [LAPIC + 0xf0], 0x1ff ; SVR: APIC software-enabled

  ; 1. find the function: vendor 0x1af4, device 0x1044 (virtio-rng, modern)
  mov ebp, 0x80000000           ; bus 0, slot 0, function 0
find:
  mov eax, ebp
  call cfg_read
  cmp eax, 0x10441af4
  je found
  add ebp, 1 << 11
  cmp ebp, 0x80000000 + (32 << 11)
  jne find
  mov al, ${f(FAIL.notFound)}
  jmp exit
found:
  ; 2. BAR0/1 (64-bit memory BAR), then memory decoding + bus master, INTx enabled
  lea eax, [ebp + 0x10]
  mov ebx, BAR
  call cfg_write
  lea eax, [ebp + 0x14]
  xor ebx, ebx
  call cfg_write
  lea eax, [ebp + 0x10]
  call cfg_read
  and eax, 0xfffffff0
  cmp eax, BAR
  mov al, ${f(FAIL.barReadback)}
  jne exit
  lea eax, [ebp + 0x04]
  mov ebx, 0x6
  call cfg_write

  ; 3. capabilities
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
  add eax, BAR
  cmp ecx, 1
  jne .not_common
  mov [v_common], eax
.not_common:
  cmp ecx, 3
  jne .not_isr
  mov [v_isr], eax
.not_isr:
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
  add eax, BAR
  mov [v_msixtab], eax
cap_next:
  mov esi, edi
  jmp caps
caps_done:
  mov eax, [v_common]
  test eax, eax
  jz caps_missing
  cmp dword [v_notify], 0
  je caps_missing
  cmp dword [v_isr], 0
  je caps_missing
  cmp dword [v_msixtab], 0
  jne caps_ok
caps_missing:
  mov al, ${f(FAIL.capsMissing)}
  jmp exit
caps_ok:
  mov ebx, [v_common]

  ; 4. reset, ACKNOWLEDGE | DRIVER, features: VERSION_1 (bit 32) only
  mov byte [ebx + 0x14], 0
  mov byte [ebx + 0x14], 3
  mov dword [ebx + 0x00], 1     ; device_feature_select = 1
  test dword [ebx + 0x04], 1
  mov al, ${f(FAIL.noVersion1)}
  jz exit
  mov dword [ebx + 0x08], 1     ; driver_feature_select = 1
  mov dword [ebx + 0x0c], 1
  mov dword [ebx + 0x08], 0
  mov dword [ebx + 0x0c], 0
  mov byte [ebx + 0x14], 0xb    ; | FEATURES_OK
  test byte [ebx + 0x14], 8
  mov al, ${f(FAIL.featuresRejected)}
  jz exit

%if INTX
  ; 5. INTx: IOAPIC redirection entry of the function's GSI (config 0x3c)
  lea eax, [ebp + 0x3c]
  call cfg_read
  movzx ecx, al
  lea eax, [ecx * 2 + 0x11]
  mov [IOAPIC], eax             ; high dword: destination APIC 0
  mov dword [IOAPIC + 0x10], 0
  dec eax
  mov [IOAPIC], eax             ; low dword: level, active high, fixed, unmasked
  mov dword [IOAPIC + 0x10], (1 << 15) | ${f(INTX_VECTOR)}
  mov word [ebx + 0x1a], 0xffff ; queue_msix_vector: none
%else
  ; 5. MSI-X: table entry 0 -> APIC 0, vector MSI_VECTOR, unmasked; enable; queue 0 -> vector 0
  mov edx, [v_msixtab]
  mov dword [edx + 0], LAPIC
  mov dword [edx + 4], 0
  mov dword [edx + 8], ${f(MSI_VECTOR)}
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
%endif

  ; queue 0: 8 entries, rings, enable
  mov word [ebx + 0x16], 0
  mov word [ebx + 0x18], QSIZE
%if INTX == 0
  mov word [ebx + 0x1a], 0
  cmp word [ebx + 0x1a], 0
  mov al, ${f(FAIL.vectorRefused)}
  jne exit
%endif
  mov dword [ebx + 0x20], DESC
  mov dword [ebx + 0x24], 0
  mov dword [ebx + 0x28], AVAIL
  mov dword [ebx + 0x2c], 0
  mov dword [ebx + 0x30], USED
  mov dword [ebx + 0x34], 0
  mov word [ebx + 0x1c], 1
  movzx eax, word [ebx + 0x1e]  ; queue_notify_off
  imul eax, [v_mult]
  add eax, [v_notify]
  mov [v_notify], eax
  mov byte [ebx + 0x14], 0xf    ; | DRIVER_OK

  ; 6. one 16-byte device-writable buffer in descriptor 0
  mov dword [DESC + 0], BUF
  mov dword [DESC + 4], 0
  mov dword [DESC + 8], 16
  mov dword [DESC + 12], 2      ; flags VIRTQ_DESC_F_WRITE, next 0
  mov word [AVAIL], 0           ; flags: interrupts wanted
  call post_and_wait

  ; 7. the used ring and the bytes
  cmp word [USED + 2], 1
  mov al, ${f(FAIL.usedIdx)}
  jne exit
  cmp dword [USED + 4], 0
  mov al, ${f(FAIL.usedId)}
  jne exit
  cmp dword [USED + 8], 16
  mov al, ${f(FAIL.usedLen)}
  jne exit
  mov eax, [BUF]
  or eax, [BUF + 4]
  or eax, [BUF + 8]
  or eax, [BUF + 12]
  mov al, ${f(FAIL.allZero)}
  jz exit
%if INTX
  cmp byte [v_isrval], 1          ; the queue bit
  mov al, ${f(FAIL.isrValue)}
  jne exit
%endif

  ; the measured round trips
  mov dx, 0x3f8
  mov al, 'S'
  out dx, al
%if WORK == 2
.go:
  cmp byte [GO_FLAG], 0
  je .go
%endif
  mov ecx, ROUNDS - 1
rounds:
  test ecx, ecx
  jz done
  push ecx
%if WORK == 0
  call post_and_wait
%elif WORK == 1
  mov edx, [v_notify]
  mov word [edx], 0
%else
  mov byte [v_flag], 0
  mov edx, [v_notify]
  mov word [edx], 0
  call post_and_wait.wait
%endif
  pop ecx
  dec ecx
  jmp rounds
done:
  mov al, ${f(VIRTIO_GUEST_OK)}
exit:
  out 0xf4, al
  hlt

; make descriptor 0 available once more, notify queue 0, halt until the handler ran
post_and_wait:
  movzx eax, word [AVAIL + 2]
  mov edx, eax
  and edx, QSIZE - 1
  mov word [AVAIL + 4 + edx * 2], 0
  inc eax
  mov byte [v_flag], 0
  mov [AVAIL + 2], ax
  mov edx, [v_notify]
  mov word [edx], 0             ; the doorbell: queue 0
.wait:
  cli
  cmp byte [v_flag], 0
  jne .got
  sti
  hlt
  jmp .wait
.got:
%if INTX
  cmp byte [v_flag], 2
%else
  cmp byte [v_flag], 1
%endif
  mov al, ${f(FAIL.wrongInterrupt)}
  jne exit
  ret

; The handlers do not IRET: KVM's instruction emulator (all a kvm_pvm host has) emulates IRET
; in real mode only. Interrupts are enabled only in the wait loop (sti; hlt; jmp), so a handler
; drops its frame (EIP, CS, EFLAGS: same privilege, no error code) and goes back to the loop's
; head, with interrupts off as the gate left them.
h_msi:
  mov byte [v_flag], 1
  mov dword [LAPIC + 0xb0], 0   ; EOI
  add esp, 12
  jmp post_and_wait.wait
h_intx:
  mov eax, [v_isr]
  mov al, [eax]                 ; reading the ISR acknowledges: INTA# goes low
  mov [v_isrval], al
  mov byte [v_flag], 2
  mov dword [LAPIC + 0xb0], 0   ; EOI (the IOAPIC's remote IRR clears)
  add esp, 12
  jmp post_and_wait.wait

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
v_common: dd 0
v_notify: dd 0
v_mult: dd 0
v_isr: dd 0
v_msixcap: dd 0
v_msixtab: dd 0
v_flag: db 0
v_isrval: db 0
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
`;
}

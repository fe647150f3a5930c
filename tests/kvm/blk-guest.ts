/**
 * A small 32-bit guest that drives a virtio-blk PCI function by hand, for the KVM engine tests
 * (on a kvm_pvm host KVM emulates every instruction, so it stays short). Its setup is the one of
 * virtio-guest.ts (the virtio-rng guest): configuration mechanism #1, capabilities, one queue,
 * MSI-X or INTx through the IOAPIC, handlers that do not IRET. Differences:
 *
 *  - it looks for 1af4:1042 (virtio-blk, modern) and keeps the BAR where the builder placed it
 *    (the machine has virtio-rng too; moving one BAR onto the other would overlap);
 *  - it negotiates VERSION_1 and VIRTIO_BLK_F_FLUSH;
 *  - it sends four requests, each a chain header (16 bytes, device-readable) [+ data] + status
 *    byte (device-writable), and waits for each one's interrupt:
 *      OUT    sector BLK_SECTOR from a 512-byte buffer filled with blkPattern(),
 *      IN     the same sector into another buffer, compared dword by dword,
 *      GET_ID into a 20-byte buffer, compared with the serial the test gives the disk,
 *      FLUSH;
 *    after each: status OK, used idx advanced, used id 0 (the head), used len as the spec says.
 *
 * Then `extraReads` more IN requests of the same sector (what a latency measurement times: it
 * sees the 'S' on COM1 before them). Exit: debug-exit BLK_GUEST_OK, or one of BLK_FAIL.
 */

export const BLK_SECTOR = 5;
export const BLK_GUEST_OK = 0x31;
export const BLK_MSI_VECTOR = 0x41;
export const BLK_INTX_VECTOR = 0x42;
const PATTERN_XOR = 0x5aa5_c33c;

/** Failure codes (debug-exit values). */
export const BLK_FAIL = {
  notFound: 0x41,
  barHigh: 0x42,
  capsMissing: 0x43,
  noVersion1: 0x44,
  featuresRejected: 0x45,
  vectorRefused: 0x46,
  wrongInterrupt: 0x47,
  usedIdx: 0x48,
  usedId: 0x49,
  usedLen: 0x4a,
  status: 0x4b,
  noFlush: 0x4c,
  readMismatch: 0x4d,
  idMismatch: 0x4e,
} as const;

/** The 512 bytes the guest writes to BLK_SECTOR: dword k = (k * 0x01020304) ^ 0x5aa5c33c. */
export function blkPattern(): Uint8Array {
  const out = new Uint8Array(512);
  const dv = new DataView(out.buffer);
  for (let k = 0; k < 128; k++) dv.setUint32(k * 4, (Math.imul(k, 0x0102_0304) ^ PATTERN_XOR) >>> 0, true);
  return out;
}

export interface BlkGuestOptions {
  /** Use INTx through the IOAPIC instead of MSI-X. */
  intx: boolean;
  /** The serial the disk was given (GET_ID answers it, zero-padded to 20 bytes). */
  serial: string;
  /** IN requests after the checked ones (default 0). */
  extraReads?: number;
}

export function virtioBlkGuest(opts: BlkGuestOptions): string {
  const f = (n: number): string => `0x${n.toString(16)}`;
  if (!/^[A-Za-z0-9._-]{1,20}$/.test(opts.serial)) throw new RangeError(`serial ${opts.serial} is not 1 to 20 of A-Z a-z 0-9 . _ -`);
  return `
%define INTX ${opts.intx ? 1 : 0}
%define EXTRA ${opts.extraReads ?? 0}
%define SECTOR ${BLK_SECTOR}
%define DESC 0x10000
%define AVAIL 0x11000
%define USED 0x12000
%define HDR 0x13000
%define BUF_W 0x14000
%define BUF_R 0x15000
%define IDBUF 0x16000
%define STATUS 0x16100
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
  mov eax, h_msi
  mov edi, idt + ${f(BLK_MSI_VECTOR)} * 8
  call set_gate
  mov eax, h_intx
  mov edi, idt + ${f(BLK_INTX_VECTOR)} * 8
  call set_gate
  lidt [idtr]
  mov dword [LAPIC + 0xf0], 0x1ff ; SVR: APIC software-enabled

  ; 1. find 1af4:1042 (virtio-blk, modern) on bus 0
  mov ebp, 0x80000000
find:
  mov eax, ebp
  call cfg_read
  cmp eax, 0x10421af4
  je found
  add ebp, 1 << 11
  cmp ebp, 0x80000000 + (32 << 11)
  jne find
  mov al, ${f(BLK_FAIL.notFound)}
  jmp exit
found:
  ; 2. BAR0/1 where the builder put it (below 4 GiB), memory decoding + bus master
  lea eax, [ebp + 0x14]
  call cfg_read
  test eax, eax
  mov al, ${f(BLK_FAIL.barHigh)}
  jnz exit
  lea eax, [ebp + 0x10]
  call cfg_read
  and eax, 0xfffffff0
  mov [v_bar], eax
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
  add eax, [v_bar]
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
  cmp dword [v_isr], 0
  je caps_missing
  cmp dword [v_msixtab], 0
  jne caps_ok
caps_missing:
  mov al, ${f(BLK_FAIL.capsMissing)}
  jmp exit
caps_ok:
  mov ebx, [v_common]

  ; 4. reset, ACKNOWLEDGE | DRIVER; features VERSION_1 (bit 32) and BLK_F_FLUSH (bit 9)
  mov byte [ebx + 0x14], 0
  mov byte [ebx + 0x14], 3
  mov dword [ebx + 0x00], 1     ; device_feature_select = 1
  test dword [ebx + 0x04], 1
  mov al, ${f(BLK_FAIL.noVersion1)}
  jz exit
  mov dword [ebx + 0x00], 0
  test dword [ebx + 0x04], 1 << 9
  mov al, ${f(BLK_FAIL.noFlush)}
  jz exit
  mov dword [ebx + 0x08], 1     ; driver_feature_select = 1
  mov dword [ebx + 0x0c], 1
  mov dword [ebx + 0x08], 0
  mov dword [ebx + 0x0c], 1 << 9
  mov byte [ebx + 0x14], 0xb    ; | FEATURES_OK
  test byte [ebx + 0x14], 8
  mov al, ${f(BLK_FAIL.featuresRejected)}
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
  mov dword [IOAPIC + 0x10], (1 << 15) | ${f(BLK_INTX_VECTOR)}
  mov word [ebx + 0x1a], 0xffff ; queue_msix_vector: none
%else
  ; 5. MSI-X: table entry 0 -> APIC 0, vector BLK_MSI_VECTOR; enable; queue 0 -> vector 0
  mov edx, [v_msixtab]
  mov dword [edx + 0], LAPIC
  mov dword [edx + 4], 0
  mov dword [edx + 8], ${f(BLK_MSI_VECTOR)}
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

  ; queue 0 (the request queue): 8 entries, rings, enable
  mov word [ebx + 0x16], 0
  mov word [ebx + 0x18], QSIZE
%if INTX == 0
  mov word [ebx + 0x1a], 0
  cmp word [ebx + 0x1a], 0
  mov al, ${f(BLK_FAIL.vectorRefused)}
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
  mov word [AVAIL], 0           ; flags: interrupts wanted

  ; 6. the pattern, then OUT (type 1) of BUF_W to SECTOR
  xor ecx, ecx
.fill:
  imul eax, ecx, 0x01020304
  xor eax, ${f(PATTERN_XOR)}
  mov [BUF_W + ecx * 4], eax
  inc ecx
  cmp ecx, 128
  jne .fill
  mov eax, 1
  mov ebx, BUF_W
  mov ecx, 512
  xor edx, edx                  ; data device-readable
  mov esi, 1                    ; the device writes the status byte only
  call do_req

  ; 7. IN (type 0) of SECTOR into BUF_R, compare
  call read_sector
  xor ecx, ecx
.cmp:
  mov eax, [BUF_W + ecx * 4]
  cmp eax, [BUF_R + ecx * 4]
  mov al, ${f(BLK_FAIL.readMismatch)}
  jne exit
  inc ecx
  cmp ecx, 128
  jne .cmp

  ; 8. GET_ID (type 8) into IDBUF (20 bytes): the serial, zero-padded
  mov eax, 8
  mov ebx, IDBUF
  mov ecx, 20
  mov edx, 2
  mov esi, 21
  call do_req
  xor ecx, ecx
.id:
  mov al, [serial + ecx]
  cmp al, [IDBUF + ecx]
  mov al, ${f(BLK_FAIL.idMismatch)}
  jne exit
  inc ecx
  cmp ecx, 20
  jne .id

  ; 9. FLUSH (type 4): header and status only
  mov eax, 4
  xor ecx, ecx
  mov esi, 1
  call do_req

  ; the measured reads
  mov dx, 0x3f8
  mov al, 'S'
  out dx, al
  mov ecx, EXTRA
extra:
  test ecx, ecx
  jz done
  push ecx
  call read_sector
  pop ecx
  dec ecx
  jmp extra
done:
  mov al, ${f(BLK_GUEST_OK)}
exit:
  out 0xf4, al
  hlt

read_sector:
  xor eax, eax
  mov ebx, BUF_R
  mov ecx, 512
  mov edx, 2                    ; data device-writable
  mov esi, 513
  ; fall through

; One request in descriptors 0 [, 1], 2: eax type, ebx data, ecx data length (0: none),
; edx data flags (0 or 2 = VIRTQ_DESC_F_WRITE), esi the used length expected. Checks the used
; ring and the status byte, exits on a failure.
do_req:
  mov [HDR], eax
  mov dword [HDR + 4], 0
  mov dword [HDR + 8], SECTOR
  mov dword [HDR + 12], 0
  mov byte [STATUS], 0xff
  mov dword [DESC + 0], HDR
  mov dword [DESC + 4], 0
  mov dword [DESC + 8], 16
  mov word [DESC + 12], 1       ; NEXT
  mov word [DESC + 14], 2
  test ecx, ecx
  jz .status
  mov word [DESC + 14], 1
  mov [DESC + 16], ebx
  mov dword [DESC + 20], 0
  mov [DESC + 24], ecx
  or edx, 1                     ; | NEXT
  mov [DESC + 28], dx
  mov word [DESC + 30], 2
.status:
  mov dword [DESC + 32], STATUS
  mov dword [DESC + 36], 0
  mov dword [DESC + 40], 1
  mov dword [DESC + 44], 2      ; WRITE, next 0
  push esi
  call post_and_wait
  pop esi
  inc word [v_count]
  movzx eax, word [v_count]
  cmp word [USED + 2], ax
  mov al, ${f(BLK_FAIL.usedIdx)}
  jne exit
  movzx eax, word [v_count]
  dec eax
  and eax, QSIZE - 1
  cmp dword [USED + 4 + eax * 8], 0
  mov bl, ${f(BLK_FAIL.usedId)}
  jne .fail
  cmp [USED + 8 + eax * 8], esi
  mov bl, ${f(BLK_FAIL.usedLen)}
  jne .fail
  cmp byte [STATUS], 0
  mov bl, ${f(BLK_FAIL.status)}
  jne .fail
  ret
.fail:
  mov al, bl
  jmp exit

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
  mov al, ${f(BLK_FAIL.wrongInterrupt)}
  jne exit
  ret

; The handlers do not IRET (KVM's emulator on a kvm_pvm host emulates IRET in real mode only):
; they drop their frame and go back to the wait loop's head, interrupts off as the gate left them.
; The INTx handler, like a driver on a shared level-triggered line, takes an interrupt whose ISR
; read has no queue bit as someone else's: on a kvm_pvm host the in-kernel IOAPIC now and then
; delivers the level interrupt once more after the ISR read lowered the line and the EOI.
h_msi:
  mov byte [v_flag], 1
  mov dword [LAPIC + 0xb0], 0   ; EOI
  add esp, 12
  jmp post_and_wait.wait
h_intx:
  mov eax, [v_isr]
  mov al, [eax]                 ; reading the ISR acknowledges: INTA# goes low
  test al, 1                    ; not the queue: not ours (as Linux's vp_interrupt says IRQ_NONE)
  jz .spurious
  mov byte [v_flag], 2
  mov dword [LAPIC + 0xb0], 0   ; EOI
  add esp, 12
  jmp post_and_wait.wait
.spurious:
  inc dword [v_spurious]
  mov dword [LAPIC + 0xb0], 0   ; EOI
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
v_bar: dd 0
v_common: dd 0
v_notify: dd 0
v_mult: dd 0
v_isr: dd 0
v_msixcap: dd 0
v_msixtab: dd 0
v_spurious: dd 0
v_count: dw 0
v_flag: db 0
serial: db "${opts.serial}"
  times 20 - ($ - serial) db 0
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

import ipaddr from 'ipaddr.js';

/** The point-to-point link between the node and one VM's network namespace. */
export interface VMSubnet {
  /** Index of the /30 inside the agent's VM network. */
  slot: number;
  /** The node's end (the VM namespace's default gateway and its DNS forwarder). */
  hostIP: string;
  /** The namespace's end: QEMU forwards <guestIP>:22 to the guest's sshd. */
  nsIP: string;
  /** Short unique id (the /30's address in hex): names the netns and the host veth. */
  id: string;
}

const toInt = (ip: string) =>
  ipaddr.IPv4.parse(ip)
    .toByteArray()
    .reduce((n, b) => n * 256 + b, 0);
const fromInt = (n: number) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');

/** Parses an IPv4 CIDR of /8 to /29; throws a message saying what to use otherwise. */
export function parseVMNetworkCidr(cidr: string): { base: number; prefix: number } {
  let parsed: [ipaddr.IPv4 | ipaddr.IPv6, number];
  try {
    parsed = ipaddr.parseCIDR(cidr);
  } catch {
    throw new RangeError(`"${cidr}" is not a CIDR; use e.g. 10.254.0.0/16`);
  }
  const [addr, prefix] = parsed;
  if (addr.kind() !== 'ipv4' || prefix < 8 || prefix > 29) {
    throw new RangeError(`"${cidr}" must be an IPv4 CIDR between /8 and /29, e.g. 10.254.0.0/16`);
  }
  const base = toInt(addr.toString());
  if (base % 2 ** (32 - prefix) !== 0) {
    throw new RangeError(
      `"${cidr}" has host bits set; use ${fromInt(base - (base % 2 ** (32 - prefix)))}/${prefix}`,
    );
  }
  return { base, prefix };
}

/** The /30 of one slot. */
export function subnetOf(cidr: string, slot: number): VMSubnet {
  const { base } = parseVMNetworkCidr(cidr);
  const net = base + slot * 4;
  return { slot, hostIP: fromInt(net + 1), nsIP: fromInt(net + 2), id: net.toString(16).padStart(8, '0') };
}

/** Hands out /30 links from the agent's VM network (WAGGLE_VM_NETWORK_CIDR). */
export class SubnetAllocator {
  readonly #cidr: string;
  readonly #size: number;
  readonly #used = new Set<number>();
  #next = 0;

  constructor(cidr: string) {
    const { prefix } = parseVMNetworkCidr(cidr);
    this.#cidr = cidr;
    this.#size = 2 ** (32 - prefix) / 4;
  }

  get cidr(): string {
    return this.#cidr;
  }

  /** Marks a slot as used (a re-adopted VM's). */
  reserve(slot: number): void {
    this.#used.add(slot);
  }

  release(slot: number): void {
    this.#used.delete(slot);
  }

  allocate(): VMSubnet {
    for (let i = 0; i < this.#size; i++) {
      const slot = this.#next;
      this.#next = (slot + 1) % this.#size;
      if (this.#used.has(slot)) continue;
      this.#used.add(slot);
      return subnetOf(this.#cidr, slot);
    }
    throw new Error(`no free /30 left in ${this.#cidr} for another VM`);
  }
}

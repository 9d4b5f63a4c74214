/**
 * Byte sizing for byte-bounded queues: pass {@link byteLength} as a step's `size` so its
 * `highWaterMark` is counted in bytes instead of messages.
 *
 * @module
 */
import { FILTERED_PAYLOAD, Message } from "../types.ts";
import { ConfigurationError } from "../errors.ts";

/**
 * UTF-8 length of a string without encoding it (no allocation).
 *
 * @example Count UTF-8 bytes
 * ```ts
 * import { utf8Length } from "./size.ts";
 * console.log(utf8Length("héllo")); // 6
 * ```
 */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 2; // a surrogate pair: 2 UTF-16 units, 4 UTF-8 bytes
        i++;
      } else n += 2;
    } else n += 2;
  }
  return n;
}

/**
 * The byte length of a payload: `Uint8Array` and other `ArrayBufferView`s and
 * `ArrayBuffer`s by their `byteLength`, strings by their UTF-8 length, arrays (batches) by
 * the sum of their elements (a `BrokerValue`/`Value` element counts its payload),
 * `null`/`undefined` and the filtered sentinel as 0. Throws {@link ConfigurationError} for
 * any other payload: write your own size function for those.
 *
 * @example Measure a payload
 * ```ts
 * import { payloadByteLength } from "./size.ts";
 * console.log(payloadByteLength(new Uint8Array(16))); // 16
 * console.log(payloadByteLength(["ab", new Uint8Array(3)])); // 5
 * ```
 */
export function payloadByteLength(payload: unknown): number {
  if (typeof payload === "string") return utf8Length(payload);
  if (payload === null || payload === undefined || payload === FILTERED_PAYLOAD) return 0;
  if (ArrayBuffer.isView(payload)) return payload.byteLength;
  if (payload instanceof ArrayBuffer) return payload.byteLength;
  if (Array.isArray(payload)) {
    let n = 0;
    for (const p of payload) {
      n += p instanceof Message ? payloadByteLength(p.payload) : payloadByteLength(p);
    }
    return n;
  }
  throw new ConfigurationError(
    `byteLength cannot size a payload of type ${
      (payload as object)?.constructor?.name ?? typeof payload
    }: it sizes Uint8Array/ArrayBuffer views, strings and arrays of those; pass your own ` +
      "`size: (m) => number` for other payloads",
  );
}

/**
 * The size of a message in bytes, for byte-bounded queues: its payload's byte length
 * ({@link payloadByteLength}), and at least 1 so that even empty and filtered messages use
 * some of the bound.
 *
 * @example Bound a queue in bytes
 * ```ts
 * import { byteLength, CommitOffsets, RunTask } from "@sluice/sluice";
 * // This step's queue holds at most 16 MiB of payloads, however many messages that is.
 * const step = new RunTask(
 *   (m: { payload: Uint8Array }) => m.payload,
 *   new CommitOffsets(() => {}),
 *   { size: byteLength, highWaterMark: 16 * 1024 * 1024 },
 * );
 * ```
 */
export function byteLength(message: Message<unknown>): number {
  const n = payloadByteLength(message.payload);
  return n > 0 ? n : 1;
}

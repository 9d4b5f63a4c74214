/**
 * Private: how `RunTaskInWorkers` packs a batch's payloads for `postMessage`.
 * Structured clone copies a view's whole buffer, so views over part of a larger buffer are
 * copied, with the batch's other such views, into one new buffer that is transferred.
 * Pure functions of the payloads; no workers here.
 *
 * @module
 */

/** True when `value` survives `structuredClone` (what `postMessage` needs). */
export function cloneable(value: unknown): boolean {
  try {
    structuredClone(value);
    return true;
  } catch {
    return false;
  }
}

/** A built-in view class: a typed array class or `DataView`. */
export type ViewConstructor = {
  new (buffer: ArrayBuffer, byteOffset: number, length: number): ArrayBufferView;
  readonly BYTES_PER_ELEMENT?: number;
};

/** The built-in view classes by name (`Float16Array` where the runtime has it). */
export const VIEW_CLASSES = new Map<string, ViewConstructor>(
  [
    Int8Array,
    Uint8Array,
    Uint8ClampedArray,
    Int16Array,
    Uint16Array,
    Int32Array,
    Uint32Array,
    Float32Array,
    Float64Array,
    BigInt64Array,
    BigUint64Array,
    (globalThis as { Float16Array?: ViewConstructor }).Float16Array,
  ].filter((c) => c !== undefined).map((c) => [c.name, c as ViewConstructor]),
);

/** A typed array's built-in class name (`"Uint8Array"` for a Node `Buffer` too). */
const typedArrayName = Object.getOwnPropertyDescriptor(
  Object.getPrototypeOf(Uint8Array.prototype),
  Symbol.toStringTag,
)!.get!;

/**
 * The built-in class `view` arrives as in a worker (its typed array class, or `DataView`);
 * undefined for a kind of view not known here.
 */
function viewConstructor(view: ArrayBufferView): ViewConstructor | undefined {
  const name = typedArrayName.call(view) as string | undefined;
  if (name !== undefined) return VIEW_CLASSES.get(name);
  return view instanceof DataView ? DataView : undefined;
}

/**
 * A view over part of a larger, unshared buffer. Structured clone copies a view's whole
 * buffer (once per `postMessage`), so a 100-byte slice of a 1 MB fetch response costs 1 MB.
 */
function isPartialView(payload: unknown): payload is ArrayBufferView {
  return ArrayBuffer.isView(payload) && payload.byteLength !== payload.buffer.byteLength &&
    !(typeof SharedArrayBuffer !== "undefined" && payload.buffer instanceof SharedArrayBuffer);
}

/**
 * Plain containers entered to find views, nested: a payload object, its `headers`, an array
 * of a header's values (a `KafkaPayload`).
 */
export const PACK_DEPTH = 3;

/**
 * Views of a smaller buffer are cloned with it: cloning up to 64 KiB costs a few
 * microseconds, less than packing the dozens of records that usually share such a buffer
 * (a compressed record batch, a small read), ~0.65 µs each when they are `KafkaPayload`s.
 */
export const PACK_MIN_SOURCE_BYTES = 1 << 16;

/**
 * Longer arrays are not searched for views (a sparse array's length can be huge). An array's
 * elements are searched, not its other properties (which a copy keeps, as a clone does).
 */
export const PACK_MAX_ARRAY_LENGTH = 65_536;

/** Thrown when a payload refers to a container that holds it (see {@link packViews}). */
const CYCLE = Symbol("cycle");

/** A view to pack: its kind, its offset in the batch's buffer and, once made, its copy. */
class PlannedView {
  copy: ArrayBufferView | undefined;
  readonly view: ArrayBufferView;
  readonly View: ViewConstructor;
  readonly at: number;
  constructor(view: ArrayBufferView, View: ViewConstructor, at: number) {
    this.view = view;
    this.View = View;
    this.at = at;
  }
}

/** A batch's views to pack, and where their copies go, found before the buffer is made. */
class Packing {
  /** Bytes of the buffer so far. */
  size = 0;
  /** Each distinct view to copy (one copy per view, as a clone makes one per view). */
  readonly views = new Map<ArrayBufferView, PlannedView>();
  /** Where copies go: a slot of the payloads or of a container's copy, and whose copy. */
  readonly slots: Array<{ target: object; key: PropertyKey; planned: PlannedView }> = [];
  /** Containers copied, so that one referred to twice is still one object in the worker. */
  readonly copies = new Map<object, object>();
  /** Payloads (by index) to be replaced by their copies. */
  readonly replaced: Array<[number, object]> = [];
  /** The containers being searched, outermost first. */
  readonly path: object[] = [];

  readonly depth: number;
  constructor(depth: number) {
    this.depth = depth;
  }
}

/**
 * Copies the bytes of every view over part of a buffer of 64 KiB or more in `payloads` (a payload, or
 * inside a payload's plain objects and arrays, {@link PACK_DEPTH} deep) into one new buffer,
 * each at an offset aligned to its element size, and replaces it by a view of the same
 * built-in kind (`Buffer` → `Uint8Array`, as a clone would make it) over its copy: in
 * `payloads` itself, and in shallow copies of the containers that held it (the sender's
 * objects are not touched). Returns that buffer, referenced by nothing else, for the caller
 * to transfer; `undefined` when there was nothing to pack. Other values, views spanning
 * their whole buffer (cloned at no extra cost), class instances and deeper containers are
 * left as they are. A view or container met twice gets one copy, as a clone keeps one
 * object, and a reference back to a container already copied goes to its copy; a reference
 * back to one not copied yet would need a full graph copy to keep the payload's shape, so
 * then only the batch's top-level views are packed.
 */
export function packViews(payloads: unknown[]): ArrayBuffer | undefined {
  let packing = new Packing(PACK_DEPTH);
  try {
    planPayloads(payloads, packing);
  } catch (e) {
    if (e !== CYCLE) throw e;
    planPayloads(payloads, packing = new Packing(0));
  }
  if (packing.views.size === 0) return undefined; // (then no container was copied either)
  const buffer = new ArrayBuffer(packing.size);
  const bytes = new Uint8Array(buffer);
  for (const p of packing.views.values()) {
    const { view, View, at } = p;
    bytes.set(View === Uint8Array ? view as Uint8Array : bytesOfView(view), at);
    p.copy = new View(buffer, at, view.byteLength / (View.BYTES_PER_ELEMENT ?? 1));
  }
  for (const { target, key, planned } of packing.slots) (target as Container)[key] = planned.copy;
  for (const [i, copy] of packing.replaced) payloads[i] = copy;
  return buffer;
}

/** Plans each payload; those to replace by a container's copy are listed in `packing`. */
function planPayloads(payloads: unknown[], packing: Packing): void {
  for (let i = 0; i < payloads.length; i++) {
    const p = payloads[i];
    if (typeof p !== "object" || p === null) continue;
    const r = plan(p, packing.depth, packing);
    if (r instanceof PlannedView) packing.slots.push({ target: payloads, key: i, planned: r });
    else if (r !== p) packing.replaced.push([i, r]);
  }
}

/**
 * What to send for `value`: a {@link PlannedView} for a view to pack, a shallow copy of a
 * plain object or array (entered if `depth` > 0) that holds views to pack, or `value` itself.
 */
function plan(value: object, depth: number, packing: Packing): object {
  if (ArrayBuffer.isView(value)) return planView(value, packing);
  if (depth === 0) return value;
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) return planContainer(value, depth, packing);
  if (proto === Array.prototype && Array.isArray(value)) {
    return value.length > PACK_MAX_ARRAY_LENGTH ? value : planContainer(value, depth, packing);
  }
  return value;
}

/** The plan of a view over part of a larger buffer (given its place), else `view`. */
function planView(view: ArrayBufferView, packing: Packing): object {
  if (!isPartialView(view) || view.buffer.byteLength < PACK_MIN_SOURCE_BYTES) return view;
  let planned = packing.views.get(view);
  if (planned !== undefined) return planned;
  const View = viewConstructor(view);
  if (View === undefined) return view; // an unknown kind of view: cloned as it is
  planned = new PlannedView(view, View, alignUp(packing.size, View));
  packing.views.set(view, planned);
  packing.size = planned.at + view.byteLength;
  return planned;
}

type Container = Record<PropertyKey, unknown>;

/** {@link plan} for a plain object or array: its copy if an entry changes, else itself. */
function planContainer(container: object, depth: number, packing: Packing): object {
  // (Only looked up once there are copies: a lookup gives the object an identity hash.)
  const done = packing.copies.size === 0 ? undefined : packing.copies.get(container);
  if (done !== undefined) return done;
  if (packing.path.includes(container)) throw CYCLE;
  packing.path.push(container);
  let copy: Container | undefined;
  if (Array.isArray(container)) {
    for (let i = 0; i < container.length; i++) {
      copy = planEntry(container as unknown as Container, i, copy, depth, packing);
    }
  } else {
    for (const key in container) {
      copy = planEntry(container as Container, key, copy, depth, packing);
    }
  }
  packing.path.pop();
  return copy ?? container;
}

/** Plans `container[key]`; returns the container's copy, made once an entry changes. */
function planEntry(
  container: Container,
  key: string | number,
  copy: Container | undefined,
  depth: number,
  packing: Packing,
): Container | undefined {
  const v = container[key];
  if (typeof v !== "object" || v === null) return copy;
  const r = plan(v, depth - 1, packing);
  // (A clone sends own properties only; an enumerable inherited one is left alone.)
  if (r === v || !Object.hasOwn(container, key)) return copy;
  if (copy === undefined) {
    copy = Array.isArray(container)
      ? copyArray(container) as unknown as Container
      : { ...container };
    packing.copies.set(container, copy);
  }
  if (r instanceof PlannedView) packing.slots.push({ target: copy, key, planned: r });
  else copy[key] = r;
  return copy;
}

/**
 * A shallow copy of `array` as a clone sees it: same length and holes, and its own
 * enumerable properties other than indices (which come last among its keys).
 */
export function copyArray(array: unknown[]): unknown[] {
  const copy = array.slice();
  const keys = Object.keys(array);
  let first = keys.length;
  while (first > 0 && !isArrayIndex(keys[first - 1])) first--;
  for (let j = first; j < keys.length; j++) {
    Object.defineProperty(copy, keys[j], {
      value: (array as unknown as Record<string, unknown>)[keys[j]],
      writable: true,
      enumerable: true,
      configurable: true,
    });
  }
  return copy;
}

/** True when `key` is an array index (a canonical integer below 2^32 - 1). */
function isArrayIndex(key: string): boolean {
  const n = Number(key);
  return n >>> 0 === n && n !== 4294967295 && String(n) === key;
}

/** The bytes `view` covers, as a `Uint8Array` over the same memory. */
function bytesOfView(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** `at` rounded up to a multiple of the element size of `View` (1 for `DataView`). */
export function alignUp(at: number, View: ViewConstructor): number {
  const n = View.BYTES_PER_ELEMENT ?? 1;
  return Math.ceil(at / n) * n;
}

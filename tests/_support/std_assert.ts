/**
 * A small stand-in for `jsr:@std/assert`, built on `node:assert/strict`, exposing the
 * same names our tests use. Point `@std/assert` in `deno.json` at `jsr:@std/assert@1` to
 * switch to the real module; no test changes are needed.
 *
 * @module
 */
import nodeAssert from "node:assert/strict";

/** An assertion failed. */
export class AssertionError extends Error {
  /** Creates an assertion error with the given message. */
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

function fail(msg: string | undefined, fallback: string): never {
  throw new AssertionError(msg ?? fallback);
}

/** Asserts that `expr` is truthy. */
export function assert(expr: unknown, msg?: string): asserts expr {
  if (!expr) fail(msg, "Expected expression to be truthy");
}

/** Asserts deep equality (like `@std/assert`'s `assertEquals`). */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  try {
    nodeAssert.deepStrictEqual(actual, expected);
  } catch (e) {
    fail(msg ? `${msg}\n${(e as Error).message}` : undefined, (e as Error).message);
  }
}

/** Asserts deep inequality. */
export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  try {
    nodeAssert.notDeepStrictEqual(actual, expected);
  } catch (e) {
    fail(msg, (e as Error).message);
  }
}

/** Asserts `actual === expected`. */
export function assertStrictEquals<T>(
  actual: unknown,
  expected: T,
  msg?: string,
): asserts actual is T {
  if (!Object.is(actual, expected)) {
    fail(msg, `Expected ${String(actual)} to be strictly equal to ${String(expected)}`);
  }
}

/** Asserts that `actual` is neither null nor undefined. */
export function assertExists<T>(actual: T, msg?: string): asserts actual is NonNullable<T> {
  if (actual === null || actual === undefined) fail(msg, `Expected a value, got ${actual}`);
}

/** Asserts `actual > expected`. */
export function assertGreater<T>(actual: T, expected: T, msg?: string): void {
  if (!(actual > expected)) fail(msg, `Expected ${actual} > ${expected}`);
}

/** Asserts `actual >= expected`. */
export function assertGreaterOrEqual<T>(actual: T, expected: T, msg?: string): void {
  if (!(actual >= expected)) fail(msg, `Expected ${actual} >= ${expected}`);
}

/** Asserts `actual < expected`. */
export function assertLess<T>(actual: T, expected: T, msg?: string): void {
  if (!(actual < expected)) fail(msg, `Expected ${actual} < ${expected}`);
}

/** Asserts `actual <= expected`. */
export function assertLessOrEqual<T>(actual: T, expected: T, msg?: string): void {
  if (!(actual <= expected)) fail(msg, `Expected ${actual} <= ${expected}`);
}

/** Asserts that `actual` includes `expected`. */
export function assertStringIncludes(actual: string, expected: string, msg?: string): void {
  if (!actual.includes(expected)) fail(msg, `Expected "${actual}" to include "${expected}"`);
}

/** Asserts that `actual` matches the regular expression. */
export function assertMatch(actual: string, expected: RegExp, msg?: string): void {
  if (!expected.test(actual)) fail(msg, `Expected "${actual}" to match ${expected}`);
}

/** Asserts that `obj` is an instance of `type`. */
export function assertInstanceOf<T extends abstract new (...args: never[]) => unknown>(
  actual: unknown,
  expectedType: T,
  msg?: string,
): asserts actual is InstanceType<T> {
  if (!(actual instanceof expectedType)) {
    fail(msg, `Expected object to be an instance of "${expectedType.name}"`);
  }
}

type ErrorClass<E extends Error> = abstract new (...args: never[]) => E;

function checkError<E extends Error>(
  e: unknown,
  ErrorClass?: ErrorClass<E>,
  msgIncludes?: string,
): E {
  if (ErrorClass && !(e instanceof ErrorClass)) {
    fail(undefined, `Expected error to be instance of "${ErrorClass.name}", got ${String(e)}`);
  }
  if (msgIncludes !== undefined && !(e instanceof Error && e.message.includes(msgIncludes))) {
    fail(undefined, `Expected error message to include "${msgIncludes}", got ${String(e)}`);
  }
  return e as E;
}

/** Asserts that `fn` throws; returns the error. */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  ErrorClass?: ErrorClass<E>,
  msgIncludes?: string,
): E {
  try {
    fn();
  } catch (e) {
    return checkError(e, ErrorClass, msgIncludes);
  }
  fail(undefined, "Expected function to throw.");
}

/** Asserts that the promise returned by `fn` rejects; returns the error. */
export async function assertRejects<E extends Error = Error>(
  fn: () => PromiseLike<unknown>,
  ErrorClass?: ErrorClass<E>,
  msgIncludes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    return checkError(e, ErrorClass, msgIncludes);
  }
  fail(undefined, "Expected function to reject.");
}

/** Fails unconditionally. */
export function unreachable(msg?: string): never {
  fail(msg, "unreachable");
}

/** `record[key]` only when the record itself has the key: user strings such as "constructor"
 * or "__proto__" must never reach Object.prototype. */
export function own<T>(record: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

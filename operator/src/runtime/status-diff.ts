/** True when writing status `next` would change the stored `current` (the apiserver sorts keys). */
export function statusDiffers(current: unknown, next: unknown): boolean {
  return sortedJson(next) !== sortedJson(current ?? {});
}

function sortedJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
}

/**
 * docs/API.md: an Idempotency-Key is 1..255 printable ASCII characters, spaces included, not only spaces. One rule for
 * the gateway (which refuses a bad key with 400 before anything runs) and the services that take keys themselves:
 * the two copies it had once disagreed about spaces.
 */
export function isValidIdempotencyKey(key: unknown): key is string {
	return typeof key === "string" && /^[\x20-\x7E]{1,255}$/.test(key) && key.trim().length > 0;
}

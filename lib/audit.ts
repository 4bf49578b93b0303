/**
 * Keyset pages for the read-only audit actions the ops consistency check walks (reservation.audit, concert.audit,
 * payment.audit). No answer carries more than `AUDIT_PAGE_SIZE` rows, so an audit never outgrows a NATS message
 * however big a sale is: the caller asks again with `after`, the sort key of the last row it got, until `next` is
 * null. A keyset (not an offset) page neither skips nor repeats a row when rows are added during the walk.
 *
 * Pages ordered by a change time (`since` reads) put a row changed during the walk after the cursor, so it is read
 * again, never lost; a write whose transaction commits after the walk passed its time is covered by the ops
 * check's safety margin on the next run.
 */
import type { Config } from "./config";

/** The paging params every audit action takes. */
export const auditPageParams = {
	/** The sort key of the last row of the previous page, as the previous answer's `next` gave it. */
	after: { type: "array", items: { type: "string", max: 100 }, min: 1, max: 3, optional: true },
	/** Rows per page; never more than AUDIT_PAGE_SIZE. */
	limit: { type: "number", integer: true, min: 1, max: 100_000, optional: true, convert: true },
	/** Only rows changed at or after this time (ISO 8601): an incremental check. */
	since: { type: "date", convert: true, optional: true }
} as const;

export interface AuditPageParams {
	after?: string[];
	limit?: number;
	since?: Date;
}

/** A page of an audit: the rows, and the `after` for the next page (null on the last one). */
export interface AuditPage<T> {
	rows: T[];
	next: string[] | null;
}

/** The page size an audit answers with: what was asked, at most the configured page. */
export function auditLimit(config: Config, asked?: number): number {
	return Math.max(1, Math.min(asked ?? config.consistency.auditPageSize, config.consistency.auditPageSize));
}

/**
 * `(c1, c2, ...) > (v1, v2, ...)` spelled out as ORs (MariaDB uses an index for these, not always for a row
 * constructor). `columns` and `values` have the same length.
 */
export function keysetAfter(columns: string[], values: unknown[]): { sql: string; params: unknown[] } {
	if (columns.length === 0 || columns.length !== values.length) throw new Error("keysetAfter: one value per column");
	const [c, ...restCols] = columns;
	const [v, ...restVals] = values;
	if (restCols.length === 0) return { sql: `${c} > ?`, params: [v] };
	const rest = keysetAfter(restCols, restVals);
	return { sql: `(${c} > ? OR (${c} = ? AND ${rest.sql}))`, params: [v, v, ...rest.params] };
}

/** A page's rows and next cursor from `limit + 1` rows read: the extra row only says there is more. */
export function pageOf<R, T>(rows: R[], limit: number, view: (r: R) => T, key: (r: R) => string[]): AuditPage<T> {
	const more = rows.length > limit;
	const page = more ? rows.slice(0, limit) : rows;
	return { rows: page.map(view), next: more && page.length > 0 ? key(page[page.length - 1]) : null };
}

/** MariaDB answers Dates, SQLite the `sqlTime` text (UTC without a zone): both as ISO 8601. */
export function isoTime(d: Date | string): string {
	return (d instanceof Date ? d : new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(d) ? d : `${d.replace(" ", "T")}Z`)).toISOString();
}

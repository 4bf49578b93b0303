/**
 * The SQL toolkit: connections (`connect.ts`), migrations (`migrate.ts`) and `Sql` with the error rules
 * (`sql.ts`). Import from here.
 */
export * from "./connect";
export * from "./migrate";
export * from "./sql";

import { createCatalog } from "./001_create_catalog";
import { createSaleVoids } from "./002_sale_voids";
import { salesSoldAtIndex } from "./003_sales_sold_at_index";
import { salesCalendar } from "./004_sales_calendar";

/** The concert database's migrations, in order (the service and the repository tests run the same list). */
export const CONCERT_MIGRATIONS = [createCatalog, createSaleVoids, salesSoldAtIndex, salesCalendar];

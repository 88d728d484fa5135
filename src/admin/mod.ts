/**
 * The admin port: `/metrics` (Prometheus, metrics.ts), `/health` and `/ready`, and the status page with
 * `/status.json` (status.ts, status_page.ts and the page's own files in status_page/), including the hot
 * keys, and the backend's addresses (address_metrics.ts). It observes the server; nothing below imports it.
 *
 * @module
 */

export * from "./admin.ts";
export * from "./metrics.ts";
export * from "./status.ts";
export * from "./status_page.ts";
export * from "./hot_keys.ts";
export * from "./probe.ts";
export * from "./address_metrics.ts";
export * from "./scraped.ts";

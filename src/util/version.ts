/**
 * The release of collapser, shown on the status page and in the start-up log.
 *
 * @module
 */

/** This release. */
export const VERSION = "0.5.0";

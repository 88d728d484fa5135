/**
 * The status page served at `GET /` on the admin port: one self-contained HTML document (no CDN, no build
 * step) that reads `GET /status.json` about once a second and draws it.
 *
 * @module
 */

/** The page's HTML. */
export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>collapser</title></head>
<body><h1>collapser</h1><p>The status page is being written; <a href="/status.json">/status.json</a> has the data.</p></body></html>
`;

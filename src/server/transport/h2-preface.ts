/**
 * The HTTP/2 client connection preface (RFC 9113 §3.4), in a module of its own: the listeners
 * tell HTTP/2 connections from HTTP/1 by it, and they load before the rest of the server (see
 * `bindUrls`), without the HTTP/2 code and its HPACK library.
 */
export const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

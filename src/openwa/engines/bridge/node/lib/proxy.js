'use strict';
// A session's proxy (`start`'s `proxy`): an http(s):// or socks5:// URL.

const { badRequest } = require('./protocol');

/** The parts of a proxy URL; throws bad_request for anything else. */
function parseProxy(url) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    throw badRequest('proxy is not a URL'); // not echoed: it may hold a password
  }
  const scheme = parsed.protocol.replace(/:$/, '');
  if (!['http', 'https', 'socks5', 'socks5h', 'socks'].includes(scheme)) {
    throw badRequest(`proxy scheme ${scheme} is not supported (http, https, socks5)`);
  }
  if (!parsed.hostname) throw badRequest('proxy has no host');
  const socks = scheme.startsWith('socks');
  const port = parsed.port || (socks ? '1080' : scheme === 'https' ? '443' : '80');
  return {
    socks,
    scheme,
    host: parsed.hostname,
    port,
    username: parsed.username ? decodeURIComponent(parsed.username) : null,
    password: parsed.password ? decodeURIComponent(parsed.password) : null,
    href: parsed.href,
  };
}

/**
 * The node Agent for a proxy URL (Baileys' websocket and media fetches). SOCKS goes as
 * socks5h so host names are resolved by the proxy, not here (a proxy is often the only
 * way out). The agent packages are ES modules: import() loads them on every Node 20.
 */
async function proxyAgent(url, loaders = {}) {
  const p = parseProxy(url);
  if (p.socks) {
    const { SocksProxyAgent } = await (loaders.socks || (() => import('socks-proxy-agent')))();
    const target = new URL(p.href);
    target.protocol = 'socks5h:';
    return new SocksProxyAgent(target.href);
  }
  const { HttpsProxyAgent } = await (loaders.http || (() => import('https-proxy-agent')))();
  return new HttpsProxyAgent(p.href);
}

module.exports = { parseProxy, proxyAgent };

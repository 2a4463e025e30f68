// Share links: a room and its token ride in the URL fragment (`#room=ID&token=T`), which
// browsers never send to a server, so no access log or Referer header sees the token.
// Pure functions of URL strings; the page applies what they return.

/**
 * The invitation a page address carries: {invite: {room, token} or null, rewritten: the address
 * to show instead, or null}. The older `?room=ID&token=T` form is accepted once and moved to
 * the fragment (`rewritten`), keeping any other query parameters.
 */
export function readInvite(href) {
  const url = new URL(href);
  const query = url.searchParams;
  let rewritten = null;
  if (query.get("room") && query.get("token") && !url.hash) {
    url.hash = fragment(query.get("room"), query.get("token"));
    query.delete("room");
    query.delete("token");
    rewritten = url.toString();
  }
  const params = new URLSearchParams(url.hash.slice(1));
  const room = params.get("room");
  const token = params.get("token");
  return { invite: room && token ? { room, token } : null, rewritten };
}

/** The link that invites to `room` with `token`, on the page at `href`. */
export function shareLink(href, room, token) {
  const url = new URL(href);
  url.hash = fragment(room, token);
  return url.toString();
}

/** `href` without its invitation (after leaving a room, or a refused link). */
export function withoutInvite(href) {
  const url = new URL(href);
  url.hash = "";
  return url.toString();
}

function fragment(room, token) {
  return new URLSearchParams({ room, token }).toString();
}

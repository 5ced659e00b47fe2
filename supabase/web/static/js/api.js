// Calls to the platform's functions through supabase-js, with their error
// envelope turned into an ApiError and then into words a viewer understands.

export class ApiError extends Error {
  constructor (status, code, message, details = {}) {
    super(message)
    this.status = status
    this.code = code
    this.details = details
  }

  get retryAfter () { return Number(this.details?.retry_after) || 0 }
}

// invoke calls a function and resolves to the envelope's data, or throws an
// ApiError. headers may carry an Authorization for row-level security.
export async function invoke (supabase, name, body, { headers, method } = {}) {
  let result
  try {
    result = await supabase.functions.invoke(name, { body, headers, method })
  } catch (err) {
    throw new ApiError(0, 'NETWORK', err?.message || String(err))
  }
  const { data, error } = result
  if (!error) {
    if (data && data.success === false) throw envelopeError(200, data)
    return data?.data ?? data
  }
  const res = error.context
  if (res && typeof res.json === 'function' && typeof res.status === 'number') {
    let body = null
    try { body = await res.clone().json() } catch { /* not JSON */ }
    if (body && body.error) {
      const err = envelopeError(res.status, body)
      if (!err.details.retry_after && res.headers?.get('retry-after')) {
        err.details = { ...err.details, retry_after: Number(res.headers.get('retry-after')) }
      }
      return Promise.reject(err)
    }
    throw new ApiError(res.status, body?.code || 'HTTP_' + res.status, body?.message || res.statusText || 'request failed')
  }
  throw new ApiError(0, 'NETWORK', error.message || 'the server could not be reached')
}

function envelopeError (status, body) {
  const e = body.error || {}
  return new ApiError(status, e.code || 'UNKNOWN', e.message || 'request failed', e.details || {})
}

const words = {
  INVALID_ACCESS_KEY: 'That access key is wrong. Ask the host for the room’s 6-digit key.',
  ROOM_NOT_FOUND: 'This room does not exist any more (it may have ended or been cleaned up).',
  ROOM_FULL: 'This room is full.',
  NOT_HOST: 'Only the host can control playback.',
  NOT_A_MEMBER: 'You are not in this room any more. Join it again.',
  IDENTITY_MISMATCH: 'You are signed in as someone else.',
  MEMBER_TOKEN_REQUIRED: 'This server asks members to prove who they are. Join the room again.',
  MEMBER_TOKEN_INVALID: 'Your membership in this room has expired. Join the room again.',
  WRONG_ROOM_TOKEN: 'Your membership is for another room. Join this room again.',
  COMMENT_NOT_FOUND: 'That comment no longer exists.',
  PAYLOAD_TOO_LARGE: 'That is too long.',
  UNAVAILABLE: 'The server cannot reach its database right now. Try again in a moment.',
  INTERNAL_ERROR: 'Something went wrong on the server.',
  NETWORK: 'The server could not be reached. Check your connection.',
}

// describe is an error in words: what happened and, when it helps, what to do.
export function describe (err, action = '') {
  if (!(err instanceof ApiError)) return `${action ? action + ': ' : ''}${err?.message || err}`
  const wait = err.retryAfter
  switch (err.code) {
    case 'RATE_LIMITED':
      return `${action ? action + ' — ' : ''}too many at once. Try again in ${formatWait(wait)}.`
    case 'TOO_MANY_ATTEMPTS':
      return `Too many wrong access keys for this room. Try again in ${formatWait(wait)}.`
    case 'ROOM_FULL':
      return err.details?.max_members ? `This room is full (${err.details.max_members} members at most).` : words.ROOM_FULL
    case 'VALIDATION_ERROR':
    case 'INVALID_REQUEST':
      return `${action ? action + ': ' : ''}${err.message}.`
    default:
      return words[err.code] ? (action ? `${action}: ${words[err.code]}` : words[err.code]) : `${action ? action + ': ' : ''}${err.message}`
  }
}

function formatWait (s) {
  if (!s || s < 1) return 'a second'
  if (s < 60) return `${s} second${s === 1 ? '' : 's'}`
  const m = Math.ceil(s / 60)
  return `${m} minute${m === 1 ? '' : 's'}`
}

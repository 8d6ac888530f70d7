#!/usr/bin/env node
// Makes a ZEGO token04 on the command line, for app servers' scripts and for trying things out.
//   zrooms-token --app-id 1234 --user alice --secret <32 chars> [--ttl 3600] [--mode gcm|cbc]
//                [--room room1] [--no-login] [--no-publish] [--streams s1,s2]
// The privilege payload is added when --room, --no-login, --no-publish or --streams is given.
import { createRequire } from 'node:module'

const { generateToken04, makePrivilegePayload } = createRequire(import.meta.url)('../lib/token.js')

const usage = 'usage: zrooms-token --app-id N --user ID --secret S [--ttl SECONDS] [--mode gcm|cbc] [--room ID] [--no-login] [--no-publish] [--streams a,b]'
const opts = { ttl: 3600, mode: 'gcm' }
const args = process.argv.slice(2)
let privilege = null
const priv = () => (privilege ??= { roomID: '', login: true, publish: true, streamIDList: null })
try {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    const next = () => {
      if (i + 1 >= args.length) throw new Error(`${a} needs a value`)
      return args[++i]
    }
    if (a === '--app-id') opts.appID = Number(next())
    else if (a === '--user') opts.userID = next()
    else if (a === '--secret') opts.secret = next()
    else if (a === '--ttl') opts.ttl = Number(next())
    else if (a === '--mode') opts.mode = next()
    else if (a === '--room') priv().roomID = next()
    else if (a === '--no-login') priv().login = false
    else if (a === '--no-publish') priv().publish = false
    else if (a === '--streams') priv().streamIDList = next().split(',').filter(Boolean)
    else if (a === '--help' || a === '-h') {
      console.log(usage)
      process.exit(0)
    } else throw new Error(`unknown option ${a}`)
  }
  const payload = privilege ? makePrivilegePayload(privilege) : ''
  console.log(generateToken04(opts.appID, opts.userID, opts.secret, opts.ttl, payload, { mode: opts.mode }))
} catch (err) {
  console.error(`zrooms-token: ${err.message}\n${usage}`)
  process.exit(2)
}

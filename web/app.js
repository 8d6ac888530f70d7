// The page: connect as one user, log into several rooms side by side, and in each room see its
// users and streams, play streams, publish the camera and microphone, and exchange messages.
// Query parameters fill the form and connect at once: ?appID=1&userID=alice&rooms=r1,r2
// (also appSign, token, codec=H264|VP8).
import { ZroomsClient } from './zrooms.js'

const $ = (sel, root = document) => root.querySelector(sel)
const params = new URLSearchParams(location.search)
const form = $('#connect')
for (const name of ['appID', 'appSign', 'userID', 'token', 'rooms', 'codec']) {
  if (params.has(name)) form.elements[name].value = params.get(name)
}
if (!form.elements.userID.value) form.elements.userID.value = `web-${Math.random().toString(36).slice(2, 8)}`

/** What the page holds, for people in the console and for tests. */
const page = { client: null, rooms: new Map(), log: [] }
window.zroomsPage = page

form.addEventListener('submit', (e) => {
  e.preventDefault()
  connect().catch((err) => status(`connect: ${err.message}`))
})
$('#add-room').addEventListener('submit', (e) => {
  e.preventDefault()
  const input = e.target.elements.roomID
  if (input.value) addRoom(input.value.trim()).catch((err) => status(`login ${input.value}: ${err.message}`))
  input.value = ''
})

function status(text) {
  $('#status').textContent = text
  page.log.push(text)
}

async function connect() {
  if (page.client) return
  const f = form.elements
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`
  const client = new ZroomsClient({ url, appID: Number(f.appID.value), appSign: f.appSign.value, user: { userID: f.userID.value } })
  await client.connect()
  page.client = client
  client.addEventListener('roomstate', (e) => page.rooms.get(e.detail.roomID)?.setState(e.detail))
  client.addEventListener('users', (e) => page.rooms.get(e.detail.roomID)?.renderUsers())
  client.addEventListener('streams', (e) => page.rooms.get(e.detail.roomID)?.renderStreams(e.detail))
  for (const kind of ['broadcast', 'barrage']) {
    client.addEventListener(kind, (e) => {
      for (const m of e.detail.messages) page.rooms.get(e.detail.roomID)?.addMessage(m.from.user_id, m.message, kind)
    })
  }
  client.addEventListener('command', (e) => page.rooms.get(e.detail.roomID)?.addMessage(e.detail.from.user_id, e.detail.command, 'command'))
  client.addEventListener('onlinecount', (e) => page.rooms.get(e.detail.roomID)?.setOnline(e.detail.count))
  client.addEventListener('closed', () => status('disconnected from the server'))
  status(`connected as ${f.userID.value}`)
  form.querySelector('button').disabled = true
  $('#add-room').hidden = false
  for (const roomID of f.rooms.value.split(',').map((r) => r.trim()).filter(Boolean)) await addRoom(roomID)
}

async function addRoom(roomID) {
  if (page.rooms.has(roomID)) return
  const view = new RoomView(roomID)
  page.rooms.set(roomID, view)
  try {
    await page.client.loginRoom(roomID, { token: form.elements.token.value })
  } catch (err) {
    view.remove()
    page.rooms.delete(roomID)
    throw err
  }
}

class RoomView {
  constructor(roomID) {
    this.roomID = roomID
    this.players = new Map() // streamID → {video, info, timer}
    this.published = null
    const el = $('#room-template').content.firstElementChild.cloneNode(true)
    el.dataset.room = roomID
    $('.room-id', el).textContent = roomID
    $('#rooms').append(el)
    this.el = el
    $('.leave', el).addEventListener('click', () => this.leave())
    $('.send', el).addEventListener('submit', (e) => {
      e.preventDefault()
      const input = e.target.elements.message
      const text = input.value
      if (!text) return
      input.value = ''
      page.client
        .sendBroadcastMessage(roomID, text)
        .then(() => this.addMessage(page.client.user.user_id, text, 'me'))
        .catch((err) => this.addMessage('!', `not sent (${err.code})`, 'error'))
    })
    $('.publish', el).addEventListener('submit', (e) => {
      e.preventDefault()
      this.togglePublish(e.target.elements.streamID.value.trim()).catch((err) => this.addMessage('!', `publish: ${err.message}`, 'error'))
    })
  }

  setState({ state, code }) {
    $('.state', this.el).textContent = code ? `${state} (${code})` : state
    this.el.dataset.state = state
  }

  setOnline(count) {
    $('.online', this.el).textContent = `${count} online`
  }

  renderUsers() {
    const room = page.client.rooms.get(this.roomID)
    const list = $('.users', this.el)
    list.replaceChildren(
      ...[page.client.user, ...(room ? room.users.values() : [])].map((u) => {
        const li = document.createElement('li')
        li.textContent = u.user_id === page.client.user.user_id ? `${u.user_id} (me)` : u.user_id
        return li
      }),
    )
  }

  renderStreams({ update, streams }) {
    if (update === 'delete') for (const s of streams) this.stopPlaying(s.stream_id).catch(() => {})
    const room = page.client.rooms.get(this.roomID)
    const list = $('.streams', this.el)
    list.replaceChildren(
      ...[...(room ? room.streams.values() : [])].map((s) => {
        const li = document.createElement('li')
        li.dataset.stream = s.stream_id
        const label = document.createElement('span')
        label.textContent = `${s.stream_id} by ${s.user.user_id} `
        const button = document.createElement('button')
        button.className = 'play'
        button.textContent = this.players.has(s.stream_id) ? 'Stop' : 'Play'
        button.addEventListener('click', () =>
          (this.players.has(s.stream_id) ? this.stopPlaying(s.stream_id) : this.play(s.stream_id)).catch((err) =>
            this.addMessage('!', `play ${s.stream_id}: ${err.message}`, 'error'),
          ),
        )
        li.append(label, button)
        return li
      }),
    )
  }

  async play(streamID) {
    const box = document.createElement('figure')
    box.dataset.stream = streamID
    const video = document.createElement('video')
    video.autoplay = true
    video.playsInline = true
    const info = document.createElement('figcaption')
    box.append(video, info)
    $('.videos', this.el).append(box)
    const timer = setInterval(async () => {
      const s = await page.client.playStats(streamID)
      if (s) info.textContent = `${streamID}: ${s.frameWidth}×${s.frameHeight}, ${s.framesDecoded} frames (${s.codec ?? '…'})`
    }, 500)
    this.players.set(streamID, { box, timer })
    this.renderStreams({ update: 'add', streams: [] })
    try {
      await page.client.startPlaying(this.roomID, streamID, video)
    } catch (err) {
      this.dropPlayer(streamID)
      throw err
    }
  }

  async stopPlaying(streamID) {
    if (!this.players.has(streamID)) return
    this.dropPlayer(streamID)
    this.renderStreams({ update: 'add', streams: [] })
    await page.client.stopPlaying(streamID)
  }

  dropPlayer(streamID) {
    const p = this.players.get(streamID)
    if (!p) return
    clearInterval(p.timer)
    p.box.remove()
    this.players.delete(streamID)
  }

  async togglePublish(streamID) {
    const button = $('.publish button', this.el)
    if (this.published) {
      const { id } = this.published
      this.published = null
      $('.preview', this.el).srcObject = null
      $('.preview', this.el).hidden = true
      button.textContent = 'Publish camera'
      await page.client.stopPublishing(id)
      return
    }
    if (!streamID) return
    const media = await navigator.mediaDevices.getUserMedia({ video: true, audio: true })
    this.published = { id: streamID, media }
    const preview = $('.preview', this.el)
    preview.srcObject = media
    preview.hidden = false
    preview.muted = true
    preview.play().catch(() => {})
    button.textContent = 'Stop publishing'
    try {
      await page.client.startPublishing(this.roomID, streamID, media, { codec: form.elements.codec.value })
    } catch (err) {
      this.published = null
      media.getTracks().forEach((t) => t.stop())
      preview.srcObject = null
      preview.hidden = true
      button.textContent = 'Publish camera'
      throw err
    }
  }

  addMessage(from, text, kind) {
    const line = document.createElement('div')
    line.className = `msg ${kind}`
    line.textContent = `${from}: ${text}`
    $('.log', this.el).append(line)
    line.scrollIntoView({ block: 'nearest' })
  }

  async leave() {
    for (const id of [...this.players.keys()]) this.dropPlayer(id)
    if (this.published) this.published.media.getTracks().forEach((t) => t.stop())
    this.remove()
    page.rooms.delete(this.roomID)
    await page.client.logoutRoom(this.roomID)
  }

  remove() {
    this.el.remove()
  }
}

if (params.has('userID') && params.has('rooms')) connect().catch((err) => status(`connect: ${err.message}`))

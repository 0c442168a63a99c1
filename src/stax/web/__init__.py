"""The browser UI's static files, served by stax-server: index.html, style.css and the ES modules
app.js (wiring and state) importing api.js, state.js, format.js, timeline.js, flame.js,
tables.js and annotate.js.

Plain HTML, CSS and modern JavaScript with no build step; stax/server/web.py serves them.
"""

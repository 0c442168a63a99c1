"""The browser UI's static files (index.html, app.js, style.css), served by stax-server.

Plain HTML, CSS and modern JavaScript with no build step; stax/server/web.py serves them.
"""

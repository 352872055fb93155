"""Where the world comes in: the process (`cli`, the `gongji` command), the ASGI app
and its lifespan (`app`), HTTP limits before anything is read (`limits`), the
playground (`playground`).

Uses every other room."""

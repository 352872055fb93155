"""The channels front ends reach the graph through."""

from __future__ import annotations

import enum


class Channel(enum.Enum):
    APP = "APP"  # the national medical-insurance app
    WECHAT = "WECHAT"  # the WeChat mini program
    ALIPAY = "ALIPAY"  # the Alipay mini program
    WEB = "WEB"  # the web portal
    HALL = "HALL"  # a service hall (服务大厅)

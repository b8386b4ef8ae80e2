"""WeCom (企业微信): the self-built app connector (config, crypto, parse, client, render, connector) and the
intelligent robots beside it (robot_config, robot_crypto, robot_parse, robot_streams, robot).

Imports only the channel core (connectors.message, connectors.channel, connectors.text, connectors.config)
and its own modules.
"""
from __future__ import annotations

from connectors.channel import ChannelContext
from connectors.wecom.config import CorpConfig, load_corps
from connectors.wecom.connector import WeComConnector
from connectors.wecom.robot import WeComChannel, WeComRobots
from connectors.wecom.robot_config import RobotConfig, load_robots

__all__ = ["CorpConfig", "RobotConfig", "WeComChannel", "WeComConnector", "WeComRobots", "build"]


def build(ctx: ChannelContext) -> WeComConnector | None:
    """The deployment's WeCom connector (with its robots when any is configured), or None when nothing is.

    A misconfigured corp or robot does not stop the process: it is left out, `copilot doctor` shows what is
    wrong, and the others keep working.
    """
    corps, problems = load_corps(ctx.tenant, ctx.section)
    robots, robot_problems = load_robots(ctx.tenant, ctx.section)
    app = dict(problems=problems, max_file=min(ctx.max_download, 20 * 1024 * 1024), labels=ctx.labels or None, engine=ctx.engine,
               tokens=ctx.tokens, claims=ctx.claims)
    if robots or robot_problems:
        side = WeComRobots(robots, problems=robot_problems, engine=ctx.engine, labels=ctx.labels or None, public_url=ctx.public_url,
                           max_file=min(ctx.max_download, 20 * 1024 * 1024))
        return WeComChannel(corps, side, **app)
    return WeComConnector(corps, **app) if corps or problems else None

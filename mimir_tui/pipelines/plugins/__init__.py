"""Built-in plugins. Each module defines Plugin subclasses; list them here.

Adding one is a module with one Plugin subclass and one line below.
"""

from __future__ import annotations

from .ai_mock import MockChat
from .ai_openai import OpenAIChat
from .delay import Delay
from .input_api import ApiInput
from .input_file import FileInput
from .input_rss import RssInput
from .mimir_backup import Backup
from .mimir_ops import Retention
from .output_html import HtmlOutput
from .output_json import JsonOutput
from .storage_vector import VectorStorage
from .system_command import Command
from .transform import Transform

BUILTIN_PLUGINS: list = [
    ApiInput,  # Input.api
    RssInput,  # Input.rss
    FileInput,  # Input.file
    Transform,  # Data_Processing.transform
    Delay,  # Data_Processing.delay
    JsonOutput,  # Output.json
    HtmlOutput,  # Output.html
    Command,  # System.command
    OpenAIChat,  # AIModels.openai
    MockChat,  # AIModels.mock
    VectorStorage,  # Storage.vector
    Retention,  # Mimir.retention
    Backup,  # Mimir.backup (the scheduled backups' step)
]

__all__ = ["BUILTIN_PLUGINS", *(p.__name__ for p in BUILTIN_PLUGINS)]

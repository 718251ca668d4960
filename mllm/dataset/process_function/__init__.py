"""Text-side processing: box formatters and conversation templates."""
from .box_formatter import BoxFormatter, PlainBoxFormatter
from .conv_template import ConversationTemplate, get_conv_template

__all__ = ['BoxFormatter', 'ConversationTemplate', 'PlainBoxFormatter', 'get_conv_template']

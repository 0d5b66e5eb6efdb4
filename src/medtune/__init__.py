"""medtune: fine-tune open LLMs into safe, measurable medical information assistants.

For education and research; not a medical device.
"""

__version__ = "0.1.0"

"""Extension objects, unbound: ``create_app`` binds them, so nothing imports the app."""

from __future__ import annotations

from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session as FlaskSession
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so Alembic names constraints stably."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


db = SQLAlchemy(model_class=Base)

# What services take as ``session``: views and commands pass db.session, Flask-SQLAlchemy's
# scoped_session proxy, as is (calling it would build a Session some requests never need);
# workers and tests may pass a plain Session. Both offer the methods the services call.
DbSession = Session | scoped_session[FlaskSession]

migrate = Migrate()
login = LoginManager()
csrf = CSRFProtect()
babel = Babel()
# The only limits are the sign-up forms' (digest.web.public), and those views check them
# themselves: the automatic check would weigh an empty set of limits before every request.
limiter = Limiter(key_func=get_remote_address, auto_check=False)
